# Like the face stage, a shard re-runs when its own videos change (and when its faces do: a
# new probe setting re-runs them), never for a label or another shard's video.
rule frontalize:
    input:
        videos=shard_table,
        files=shard_files,
        faces="results/faces/shard-{shard}.h5",
    output:
        aligned="results/aligned/shard-{shard}.h5",
        montages=directory("results/qc/montages/shard-{shard}"),
    log:
        "logs/frontalize/shard-{shard}.log",
    benchmark:
        "logs/runtime/frontalize/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=shard_runtime,
    params:
        frontalize=section("frontalize"),
        on_error=config["on_error"],
    shell:
        "{PY} -m pipeline.frontalize --videos {input.videos:q} --faces {input.faces:q} "
        "--out {output.aligned:q} --montages {output.montages:q} --params {params.frontalize:q} "
        "--on-error {params.on_error} > {log:q} 2>&1"
