rule extract_features:
    input:
        aligned="results/aligned/shard-{shard}.h5",
        model=backbone_files,
    output:
        features="results/features/{backbone}/shard-{shard}.h5",
    log:
        "logs/extract_features/{backbone}/shard-{shard}.log",
    benchmark:
        "logs/runtime/extract_features/{backbone}/shard-{shard}.tsv"
    wildcard_constraints:
        backbone=PATTERNS["shared"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=shard_runtime,
        gpu=backbone_gpus,
    params:
        backbone=get_backbone_params,
    shell:
        "{PY} -m pipeline.features --aligned {input.aligned:q} --backbone {wildcards.backbone} "
        "--out {output.features:q} --params {params.backbone:q} --threads {threads} "
        "> {log:q} 2>&1"


# Backbones fitted on labels (per_fold in the catalog): trained inside each fold on its
# training subjects only by the trainer their catalog entry names, then used for that fold's
# features only.
rule train_backbone:
    input:
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
        folds="results/folds.csv",
    output:
        weights="results/backbones/{backbone}/fold{fold}/model.pt",
        history="results/backbones/{backbone}/fold{fold}/history.csv",
    log:
        "logs/train_backbone/{backbone}/fold{fold}.log",
    benchmark:
        "logs/runtime/train_backbone/{backbone}/fold{fold}.tsv"
    wildcard_constraints:
        backbone=PATTERNS["per_fold"],
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=backbone_gpus,
    params:
        backbone=get_backbone_params,
    shell:
        "{PY} -m pipeline.train_backbone --backbone {wildcards.backbone} "
        "--aligned {input.aligned:q} --folds {input.folds:q} --fold {wildcards.fold} "
        "--params {params.backbone:q} --threads {threads} --out {output.weights:q} "
        "--out-history {output.history:q} > {log:q} 2>&1"


rule extract_fold_features:
    input:
        aligned="results/aligned/shard-{shard}.h5",
        weights="results/backbones/{backbone}/fold{fold}/model.pt",
    output:
        features="results/features/{backbone}/fold{fold}/shard-{shard}.h5",
    log:
        "logs/extract_features/{backbone}/fold{fold}/shard-{shard}.log",
    benchmark:
        "logs/runtime/extract_features/{backbone}/fold{fold}/shard-{shard}.tsv"
    wildcard_constraints:
        backbone=PATTERNS["per_fold"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=shard_runtime,
        gpu=backbone_gpus,
    params:
        backbone=get_backbone_params,
    shell:
        "{PY} -m pipeline.features --aligned {input.aligned:q} --backbone {wildcards.backbone} "
        "--checkpoint {input.weights:q} --out {output.features:q} "
        "--params {params.backbone:q} --threads {threads} > {log:q} 2>&1"


rule feature_index:
    input:
        features=get_all_features,
    output:
        index="results/features/{backbone}/index.csv",
    log:
        "logs/feature_index/{backbone}.log",
    benchmark:
        "logs/runtime/feature_index/{backbone}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{PY} -m pipeline.store --features {input.features:q} --out {output.index:q} "
        "> {log:q} 2>&1"
