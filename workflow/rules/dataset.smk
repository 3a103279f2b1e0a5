rule adapt_dataset:
    input:
        root=plan.dataset_root(config),
    output:
        sheet="results/dataset/sheet.csv",
    log:
        "logs/adapt_dataset.log",
    benchmark:
        "logs/runtime/adapt_dataset.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        format=DATASET["format"],
    shell:
        "{PY} -m pipeline.datasets.adapters --format {params.format} --root {input.root:q} "
        "--out {output.sheet:q} > {log:q} 2>&1"


# The dataset rule probes the videos; the audit (its own rule) checks them as a set and maps
# labels; the gate stops the run before any face job (plan.AUDIT_KEYS: what each reads).
# The sheet's videos are input files too (plan.video_files): one replaced in place, added or
# removed probes again. A checkpoint: each face job then reads its own shard's rows and re-runs
# only when its own videos change (plan.shard_inputs).


checkpoint dataset:
    input:
        sheet=get_sheet(),
        photos=get_reference_photos,
        videos=dataset_videos,
    output:
        videos="results/dataset/probed.csv",
        skipped="results/qc/dataset_skipped.csv",
    log:
        "logs/dataset.log",
    benchmark:
        "logs/runtime/dataset.tsv"
    threads: PROBE_THREADS
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        dataset=plan.dataset_params(config),
        untracked=untracked_state,
        on_error=config["on_error"],
        task=TASK,
    shell:
        "{PY} -m pipeline.datasets.sheet --sheet {input.sheet:q} --out {output.videos:q} "
        "--skipped {output.skipped:q} --params {params.dataset:q} "
        "--on-error {params.on_error} --threads {threads} --task {params.task} "
        "> {log:q} 2>&1"


rule audit:
    input:
        videos="results/dataset/probed.csv",
    output:
        videos="results/dataset/videos.csv",
        audit="results/qc/audit.csv",
    log:
        "logs/audit.log",
    benchmark:
        "logs/runtime/audit.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        audit=plan.audit_params(config),
    shell:
        "{PY} -m pipeline.datasets.audit run --videos {input.videos:q} "
        "--out-videos {output.videos:q} --out {output.audit:q} --params {params.audit:q} "
        "> {log:q} 2>&1"


# What stops the run shows in the terminal too (tee), not only in its log.
rule audit_gate:
    input:
        audit="results/qc/audit.csv",
    output:
        passed="results/qc/audit_passed.txt",
    log:
        "logs/audit_gate.log",
    benchmark:
        "logs/runtime/audit_gate.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        strict=str(bool(DATASET.get("strict"))).lower(),
    shell:
        "{PY} -m pipeline.datasets.audit check --audit {input.audit:q} "
        "--strict {params.strict:q} --out {output.passed:q} 2>&1 | tee {log:q}"
