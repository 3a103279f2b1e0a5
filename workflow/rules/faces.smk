# The face stage starts once the dataset audit passed (ancient: a gate re-run, as when
# dataset.strict changes, re-runs no face job) and reads the probe's table, so that label
# settings (aliases, labels) never re-run it. The table is ancient too (plan.shard_inputs says
# when not): what re-runs a shard is its own videos (input files: one replaced in place, added
# or removed re-runs this shard alone; a label, a subject or another shard's video none) and
# the probe's settings.
rule detect_faces:
    input:
        videos=shard_table,
        files=shard_files,
        audit=ancient("results/qc/audit_passed.txt"),
    output:
        faces="results/faces/shard-{shard}.h5",
    log:
        "logs/detect_faces/shard-{shard}.log",
    benchmark:
        "logs/runtime/detect_faces/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=shard_runtime,
        gpu=gpus_for(config["face"]["device"]),
    params:
        face=section("face"),
        probe=plan.dataset_params(config),
        shards=config["shards"],
        on_error=config["on_error"],
    shell:
        "{PY} -m pipeline.faces --videos {input.videos:q} --shard {wildcards.shard} "
        "--shards {params.shards} --out {output.faces:q} --params {params.face:q} "
        "--threads {threads} --on-error {params.on_error} > {log:q} 2>&1"
