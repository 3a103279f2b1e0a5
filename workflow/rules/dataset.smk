rule dataset:
    input:
        sheet=config["dataset"]["sheet"],
    output:
        videos="results/dataset/videos.csv",
        skipped="results/qc/dataset_skipped.csv",
    log:
        "logs/dataset.log",
    params:
        dataset=section("dataset"),
        on_error=config["on_error"],
    shell:
        "{PY} -m pipeline.datasets.sheet --sheet {input.sheet:q} --out {output.videos:q} "
        "--skipped {output.skipped:q} --params {params.dataset:q} "
        "--on-error {params.on_error} > {log:q} 2>&1"
