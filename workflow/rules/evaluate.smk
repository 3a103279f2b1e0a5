if TASK == "classify":

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
            "benchmarks/evaluate/{model}_{backbone}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            provenance=get_provenance,
        shell:
            "{PY} -m pipeline.evaluate --predictions {input.predictions:q} "
            "--onthefly {input.onthefly:q} --histories {input.histories:q} "
            "--model {wildcards.model} --backbone {wildcards.backbone} "
            "--params {params.provenance:q} --out {output.metrics:q} > {log:q} 2>&1"

else:

    rule evaluate:
        input:
            predictions=get_predictions,
            histories=get_histories,
        output:
            metrics="results/metrics/{model}_{backbone}.json",
        log:
            "logs/evaluate/{model}_{backbone}.log",
        benchmark:
            "benchmarks/evaluate/{model}_{backbone}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            provenance=get_provenance,
        shell:
            "{PY} -m pipeline.regression.evaluate --predictions {input.predictions:q} "
            "--histories {input.histories:q} --model {wildcards.model} "
            "--backbone {wildcards.backbone} --params {params.provenance:q} "
            "--out {output.metrics:q} > {log:q} 2>&1"
