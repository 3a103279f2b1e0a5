rule report:
    input:
        metrics=get_metrics(),
        videos="results/dataset/videos.csv",
        folds="results/folds.csv",
        skipped="results/qc/dataset_skipped.csv",
        folds_skipped="results/qc/folds_skipped.csv",
        faces=expand("results/faces/shard-{shard}.h5", shard=SHARDS),
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
        montages=expand("results/qc/montages/shard-{shard}", shard=SHARDS),
        index=expand(
            "results/features/{backbone}/index.csv", backbone=list(config["backbones"])
        ),
    output:
        report="results/report.html",
        comparison="results/comparison.csv",
        skipped="results/qc/skipped.csv",
    log:
        "logs/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=json.dumps(config, sort_keys=True),
    shell:
        "{PY} -m pipeline.report --metrics {input.metrics:q} --videos {input.videos:q} "
        "--folds {input.folds:q} --dataset-skipped {input.skipped:q} --faces {input.faces:q} "
        "--aligned {input.aligned:q} --montages {input.montages:q} "
        "--folds-skipped {input.folds_skipped:q} --benchmarks benchmarks "
        "--config {params.config:q} --out {output.report:q} "
        "--comparison {output.comparison:q} --skipped-out {output.skipped:q} "
        "> {log:q} 2>&1"
