rule extract_features:
    input:
        aligned="results/aligned/shard-{shard}.h5",
    output:
        features="results/features/{backbone}/shard-{shard}.h5",
    log:
        "logs/extract_features/{backbone}/shard-{shard}.log",
    benchmark:
        "benchmarks/extract_features/{backbone}/shard-{shard}.tsv"
    threads: 1
    params:
        backbone=get_backbone_params,
    shell:
        "{PY} -m pipeline.features --aligned {input.aligned:q} --backbone {wildcards.backbone} "
        "--out {output.features:q} --params {params.backbone:q} --threads {threads} "
        "> {log:q} 2>&1"


rule feature_index:
    input:
        features=get_features,
    output:
        index="results/features/{backbone}/index.csv",
    log:
        "logs/feature_index/{backbone}.log",
    shell:
        "{PY} -m pipeline.store --features {input.features:q} --out {output.index:q} "
        "> {log:q} 2>&1"
