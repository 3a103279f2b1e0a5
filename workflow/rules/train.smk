if TASK == "classify":

    rule train:
        input:
            clips="results/clips.csv",
            folds="results/folds.csv",
            features=get_features,
        output:
            weights="results/models/{model}/{backbone}/fold{fold}/model.pt",
            history="results/models/{model}/{backbone}/fold{fold}/history.csv",
            predictions="results/models/{model}/{backbone}/fold{fold}/predictions.csv",
            onthefly="results/models/{model}/{backbone}/fold{fold}/onthefly.csv",
        log:
            "logs/train/{model}/{backbone}/fold{fold}.log",
        benchmark:
            "benchmarks/train/{model}/{backbone}/fold{fold}.tsv"
        threads: 1
        resources:
            mem_mb=train_mem_mb,
            runtime=240,
            gpu=gpus_for(config["train"]["device"]),
        params:
            model=get_model_params,
            length=config["clips"]["length"],
            seed=config["train"]["seed"],
            device=config["train"]["device"],
            normalize=lambda wildcards: model_normalize(wildcards.model),
            preprocessing=get_preprocessing,
        shell:
            "{PY} -m pipeline.train --clips {input.clips:q} --folds {input.folds:q} "
            "--features {input.features:q} --model {wildcards.model} "
            "--backbone {wildcards.backbone} --fold {wildcards.fold} --params {params.model:q} "
            "--clip-length {params.length} --seed {params.seed} --device {params.device:q} "
            "--threads {threads} --normalize {params.normalize} "
            "--preprocessing {params.preprocessing:q} --out-weights {output.weights:q} "
            "--out-history {output.history:q} --out-predictions {output.predictions:q} "
            "--out-onthefly {output.onthefly:q} "
            "> {log:q} 2>&1"

else:

    rule train:
        input:
            clips="results/clips.csv",
            folds="results/folds.csv",
            targets="results/targets.h5",
            features=get_features,
        output:
            weights="results/models/{model}/{backbone}/fold{fold}/model.pt",
            history="results/models/{model}/{backbone}/fold{fold}/history.csv",
            predictions="results/models/{model}/{backbone}/fold{fold}/predictions.csv",
        log:
            "logs/train/{model}/{backbone}/fold{fold}.log",
        benchmark:
            "benchmarks/train/{model}/{backbone}/fold{fold}.tsv"
        threads: 1
        resources:
            mem_mb=train_mem_mb,
            runtime=240,
            gpu=gpus_for(config["train"]["device"]),
        params:
            model=get_model_params,
            length=config["clips"]["length"],
            seed=config["train"]["seed"],
            device=config["train"]["device"],
            loss=config["regress"]["loss"],
            normalize=lambda wildcards: model_normalize(wildcards.model),
            preprocessing=get_preprocessing,
        shell:
            "{PY} -m pipeline.regression.train --clips {input.clips:q} "
            "--folds {input.folds:q} --targets {input.targets:q} "
            "--features {input.features:q} --model {wildcards.model} "
            "--backbone {wildcards.backbone} --fold {wildcards.fold} "
            "--params {params.model:q} --loss {params.loss} "
            "--clip-length {params.length} --seed {params.seed} "
            "--device {params.device:q} --threads {threads} "
            "--normalize {params.normalize} --preprocessing {params.preprocessing:q} "
            "--out-weights {output.weights:q} --out-history {output.history:q} "
            "--out-predictions {output.predictions:q} > {log:q} 2>&1"
