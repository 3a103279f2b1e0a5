rule window_clips:
    input:
        videos="results/dataset/videos.csv",
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
    output:
        clips="results/clips.csv",
    log:
        "logs/window_clips.log",
    benchmark:
        "logs/runtime/window_clips.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        clips=section("clips"),
    shell:
        "{PY} -m pipeline.clips --videos {input.videos:q} --aligned {input.aligned:q} "
        "--out {output.clips:q} --params {params.clips:q} > {log:q} 2>&1"


checkpoint folds:
    input:
        clips="results/clips.csv",
        split=get_split_file(),
    output:
        folds="results/folds.csv",
        skipped="results/qc/folds_skipped.csv",
    log:
        "logs/folds.log",
    benchmark:
        "logs/runtime/folds.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cv=section("cv"),
        split=plan.split_arguments(config),
        task=TASK,
    shell:
        "{PY} -m pipeline.folds --clips {input.clips:q} --out {output.folds:q} "
        "--skipped {output.skipped:q} --params {params.cv:q} {params.split} "
        "--task {params.task} > {log:q} 2>&1"
