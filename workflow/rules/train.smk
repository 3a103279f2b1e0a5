# One rule whatever the task: the module (pipeline.train, or pipeline.regression.train) and
# the task's own arguments and outputs come from pipeline.plan.
rule train:
    input:
        clips="results/clips.csv",
        folds="results/folds.csv",
        targets=get_targets,
        features=get_features,
    output:
        **plan.train_outputs(TASK),
    log:
        "logs/train/{model}/{backbone}/fold{fold}.log",
    benchmark:
        "logs/runtime/train/{model}/{backbone}/fold{fold}.tsv"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
        gpu=gpus_for(config["train"]["device"]),
    params:
        module=plan.TRAIN_MODULES[TASK],
        task=plan.task_arguments(config, "train"),
        outputs=train_output_arguments,
        model=get_model_params,
        length=config["clips"]["length"],
        seed=config["train"]["seed"],
        device=config["train"]["device"],
        normalize=get_normalize,
        preprocessing=get_preprocessing,
    shell:
        "{PY} -m {params.module:q} --clips {input.clips:q} --folds {input.folds:q} "
        "{params.task} --features {input.features:q} --model {wildcards.model} "
        "--backbone {wildcards.backbone} --fold {wildcards.fold} --params {params.model:q} "
        "--clip-length {params.length} --seed {params.seed} --device {params.device:q} "
        "--threads {threads} --normalize {params.normalize} "
        "--preprocessing {params.preprocessing:q} {params.outputs} > {log:q} 2>&1"
