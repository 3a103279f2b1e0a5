# A checkpoint: the dataset rule reads the sheet it writes for its input files (the videos).
checkpoint demo_data:
    output:
        sheet=f"{DEMO_DIR}/sheet.csv",
        videos=directory(f"{DEMO_DIR}/videos"),
        annotations=directory(f"{DEMO_DIR}/annotations"),
    log:
        "logs/demo_data.log",
    benchmark:
        "logs/runtime/demo_data.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        demo=section("demo"),
        out=DEMO_DIR,
    shell:
        "{PY} -m pipeline.datasets.demo --out {params.out:q} --params {params.demo:q} "
        "--threads {threads} > {log:q} 2>&1"
