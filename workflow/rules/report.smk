# Compute in rules, render in the report: comparisons, QC summaries and the run-time table are
# small files of their own rules; the report rule renders them and reads nothing else.
rule compare:
    input:
        metrics=get_metrics(),
    output:
        comparison="results/comparison.csv",
    log:
        "logs/compare.log",
    benchmark:
        "logs/runtime/compare.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{PY} -m pipeline.compare --metrics {input.metrics:q} --out {output.comparison:q} "
        "> {log:q} 2>&1"


rule qc_faces:
    input:
        faces=expand("results/faces/shard-{shard}.h5", shard=SHARDS),
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
    output:
        summary="results/qc/faces.json",
    log:
        "logs/qc_faces.log",
    benchmark:
        "logs/runtime/qc_faces.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "{PY} -m pipeline.qc faces --faces {input.faces:q} --aligned {input.aligned:q} "
        "--out {output.summary:q} > {log:q} 2>&1"


rule qc_skipped:
    input:
        dataset="results/qc/dataset_skipped.csv",
        folds="results/qc/folds_skipped.csv",
        faces=expand("results/faces/shard-{shard}.h5", shard=SHARDS),
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
    output:
        skipped="results/qc/skipped.csv",
    log:
        "logs/qc_skipped.log",
    benchmark:
        "logs/runtime/qc_skipped.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{PY} -m pipeline.qc skipped --dataset-skipped {input.dataset:q} "
        "--folds-skipped {input.folds:q} --faces {input.faces:q} --aligned {input.aligned:q} "
        "--out {output.skipped:q} > {log:q} 2>&1"


rule runtime:
    input:
        benchmarks=get_benchmarks,
    output:
        runtime="results/qc/runtime.csv",
    log:
        "logs/runtime.log",
    benchmark:
        "logs/runtime/runtime.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{PY} -m pipeline.qc runtime --benchmarks {input.benchmarks:q} --root logs/runtime "
        "--out {output.runtime:q} > {log:q} 2>&1"


rule report:
    input:
        metrics=get_metrics(),
        videos="results/dataset/videos.csv",
        audit="results/qc/audit.csv",
        folds="results/folds.csv",
        skipped="results/qc/skipped.csv",
        comparison="results/comparison.csv",
        faces="results/qc/faces.json",
        runtime="results/qc/runtime.csv",
        index=get_indexes(),
        montages=expand("results/qc/montages/shard-{shard}", shard=SHARDS),
        extras=get_report_extras,
        curves=get_curves(),
    output:
        report="results/report.html",
    log:
        "logs/report.log",
    benchmark:
        "logs/runtime/report.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=section(),
    shell:
        "{PY} -m pipeline.report --metrics {input.metrics:q} --videos {input.videos:q} "
        "--audit {input.audit:q} "
        "--folds {input.folds:q} --skipped {input.skipped:q} "
        "--comparison {input.comparison:q} --faces {input.faces:q} "
        "--runtime {input.runtime:q} --index {input.index:q} --montages {input.montages:q} "
        "--targets {input.extras:q} --curves {input.curves:q} --config {params.config:q} "
        "--out {output.report:q} "
        "> {log:q} 2>&1"
