rule adapt_dataset:
    input:
        root=get_dataset_root(),
    output:
        sheet="results/dataset/sheet.csv",
    log:
        "logs/adapt_dataset.log",
    benchmark:
        "benchmarks/adapt_dataset.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        format=DATASET["format"],
    shell:
        "{PY} -m pipeline.datasets.adapters --format {params.format} --root {input.root:q} "
        "--out {output.sheet:q} > {log:q} 2>&1"


rule dataset:
    input:
        sheet=get_sheet(),
        photos=get_reference_photos,
    output:
        videos="results/dataset/videos.csv",
        skipped="results/qc/dataset_skipped.csv",
    log:
        "logs/dataset.log",
    benchmark:
        "benchmarks/dataset.tsv"
    threads: PROBE_THREADS
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        # the annotation settings are the targets rule's: changing them re-runs no video stage
        dataset=json.dumps(
            {k: v for k, v in DATASET.items() if k != "annotation"}, sort_keys=True
        ),
        on_error=config["on_error"],
        task=TASK,
    shell:
        "{PY} -m pipeline.datasets.sheet --sheet {input.sheet:q} --out {output.videos:q} "
        "--skipped {output.skipped:q} --params {params.dataset:q} "
        "--on-error {params.on_error} --threads {threads} --task {params.task} "
        "> {log:q} 2>&1"
