# One rule whatever the task (pipeline.evaluate, or pipeline.regression.evaluate): a
# classifier's on-the-fly predictions are an input only when it has them.
rule evaluate:
    input:
        predictions=get_predictions,
        onthefly=get_onthefly,
        histories=get_histories,
    output:
        metrics="results/metrics/{model}_{backbone}.json",
    log:
        "logs/evaluate/{model}_{backbone}.log",
    benchmark:
        "logs/runtime/evaluate/{model}_{backbone}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        module=plan.EVALUATE_MODULES[TASK],
        onthefly=onthefly_argument,
        provenance=get_provenance,
    shell:
        "{PY} -m {params.module:q} --predictions {input.predictions:q} {params.onthefly} "
        "--histories {input.histories:q} --model {wildcards.model} "
        "--backbone {wildcards.backbone} --params {params.provenance:q} "
        "--out {output.metrics:q} > {log:q} 2>&1"


rule curve:
    input:
        clips="results/clips.csv",
        folds="results/folds.csv",
        features=get_curve_features,
    output:
        table="results/curves/{model}_{backbone}.csv",
        summary="results/curves/{model}_{backbone}.json",
    log:
        "logs/curve/{model}_{backbone}.log",
    benchmark:
        "logs/runtime/curve/{model}_{backbone}.tsv"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
        gpu=gpus_for(config["train"]["device"]),
    params:
        model=get_model_params,
        curve=section("curve"),
        length=config["clips"]["length"],
        seed=config["train"]["seed"],
        device=config["train"]["device"],
        normalize=get_normalize,
    shell:
        "{PY} -m pipeline.curve --clips {input.clips:q} --folds {input.folds:q} "
        "--features {input.features:q} --model {wildcards.model} "
        "--backbone {wildcards.backbone} --params {params.model:q} "
        "--curve {params.curve:q} --clip-length {params.length} --seed {params.seed} "
        "--device {params.device:q} --threads {threads} --normalize {params.normalize} "
        "--out-csv {output.table:q} --out-json {output.summary:q} > {log:q} 2>&1"
