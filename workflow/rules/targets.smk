# task: regress: every video's continuous labels carried onto its decoded frames.
rule targets:
    input:
        videos="results/dataset/probed.csv",
        faces=expand("results/faces/shard-{shard}.h5", shard=SHARDS),
    output:
        targets="results/targets.h5",
        qc="results/qc/targets.csv",
    log:
        "logs/targets.log",
    benchmark:
        "logs/runtime/targets.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        annotation=section("dataset", "annotation"),
    shell:
        "{PY} -m pipeline.targets --videos {input.videos:q} --faces {input.faces:q} "
        "--params {params.annotation:q} --out {output.targets:q} --qc {output.qc:q} "
        "> {log:q} 2>&1"
