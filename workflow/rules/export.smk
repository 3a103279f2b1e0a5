# Per-frame tables (python -m pipeline.export): not part of results/report.html; ask for it
# with `snakemake --cores 8 results/frames`.
rule export_frames:
    input:
        faces=expand("results/faces/shard-{shard}.h5", shard=SHARDS),
        aligned=expand("results/aligned/shard-{shard}.h5", shard=SHARDS),
        videos="results/dataset/videos.csv",
        folds="results/folds.csv",
        features=get_vector_features,
        predictions=get_all_predictions,
    output:
        frames=directory("results/frames"),
    log:
        "logs/export_frames.log",
    benchmark:
        "logs/runtime/export_frames.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "{PY} -m pipeline.export --faces {input.faces:q} --aligned {input.aligned:q} "
        "--videos {input.videos:q} --folds {input.folds:q} --features {input.features:q} "
        "--predictions {input.predictions:q} --out {output.frames:q} > {log:q} 2>&1"
