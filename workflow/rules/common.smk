import os
import shlex
import sys
import time

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)

from pipeline import configcheck, plan
from pipeline.common import ConfigError

# Unknown keys first (naming the valid ones), then the schema (types, ranges, defaults), then
# what the schema cannot express: pipeline/configcheck.py, unit-tested without Snakemake.
SCHEMA = configcheck.load_schema(configcheck.schema_path(workflow.basedir))
try:
    configcheck.drop_disabled(config)
    configcheck.refuse_unknown_keys(config, SCHEMA)
    validate(config, "../schemas/config.schema.yaml")
    EXPERIMENTS = configcheck.check(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None

STARTED = time.time()  # what this run wrote is newer (plan.audit_stop)
PY = plan.interpreter(config, sys.executable)
SHARDS = list(range(config["shards"]))
PROBE_THREADS = plan.probe_threads()
CV = config["cv"]
DATASET = config["dataset"]
TASK = config["task"]  # classify | regress
DEMO_DIR = os.path.dirname(configcheck.DEMO_SHEET)
# With curve.subjects: results retrained on subsets of each fold's training subjects (those
# curve.models names); not on a backbone trained per fold (pipeline.curve).
CURVES = configcheck.curve_pairs(config, EXPERIMENTS)
PATTERNS = plan.patterns()


wildcard_constraints:
    shard=r"\d+",
    fold=r"\d+",
    # a model variant is "name@label"; a fused backbone "a+b"
    model=PATTERNS["model"],
    backbone=PATTERNS["backbone"],


def fold_ids():
    """The folds every model is trained on: k for kfold; for loso (one per subject) and file
    (the split's) they are known once `folds.csv` exists (the `folds` checkpoint), so a dry
    run before it stops there."""
    if CV["method"] in ("loso", "file"):
        import pandas as pd

        path = checkpoints.folds.get().output.folds
        return sorted(int(f) for f in pd.read_csv(path, usecols=["fold"]).fold.unique())
    return list(range(CV["k"]))


# Input and params functions: each forwards to pipeline.plan (tested without Snakemake).
def section(*keys):
    return plan.section(config, *keys)


def get_sheet():
    return plan.sheet(config)


def get_split_file():
    return plan.split_files(config)


def dataset_videos(wildcards):
    """The dataset's video files (plan.video_files); the generated demo's once its sheet is
    written (a checkpoint)."""
    if config["dataset"]["format"] == "sheet" and get_sheet() == configcheck.DEMO_SHEET:
        checkpoints.demo_data.get()
    return plan.video_files(config)


def shard_table(wildcards):
    """The probe's table, ancient unless the shard has a file that cannot be an input
    (plan.shard_inputs). Named inputs, not unpack(): a dry run before the checkpoint ran must
    still format the job's command."""
    probed = checkpoints.dataset.get().output.videos
    _, old = plan.shard_inputs(probed, int(wildcards.shard), config["shards"])
    return ancient(probed) if old else probed


def shard_files(wildcards):
    """A shard's videos and reference photos (plan.shard_inputs)."""
    probed = checkpoints.dataset.get().output.videos
    return plan.shard_inputs(probed, int(wildcards.shard), config["shards"])[0]


def untracked_state(wildcards):
    return plan.untracked_state(config)


def get_reference_photos(wildcards):
    return plan.reference_photos(config)


def get_backbone_params(wildcards):
    return plan.backbone_params(config, wildcards.backbone)


def backbone_files(wildcards):
    return plan.backbone_files(config, wildcards.backbone)


def get_model_params(wildcards):
    return plan.model_params(config, wildcards.model)


def get_normalize(wildcards):
    return plan.model_normalize(config, wildcards.model)


def get_features(wildcards):
    return plan.feature_files(wildcards.backbone, [wildcards.fold], SHARDS)


def get_all_features(wildcards):
    return plan.feature_files(wildcards.backbone, fold_ids(), SHARDS)


get_curve_features = get_all_features  # curves refuse per-fold backbones (configcheck)


def get_vector_features(wildcards):
    return plan.vector_feature_files(config, fold_ids(), SHARDS)


def get_predictions(wildcards):
    return plan.fold_files(
        wildcards.model, wildcards.backbone, "predictions.csv", fold_ids()
    )


def get_histories(wildcards):
    return plan.fold_files(
        wildcards.model, wildcards.backbone, "history.csv", fold_ids()
    )


def get_onthefly(wildcards):
    """A classifier's on-the-fly predictions (a regress run has none)."""
    if TASK != "classify":
        return []
    return plan.fold_files(
        wildcards.model, wildcards.backbone, "onthefly.csv", fold_ids()
    )


def get_all_predictions(wildcards):
    """The test-clip predictions of every (model, backbone) pair and fold."""
    folds = fold_ids()
    return [
        p
        for m, b in EXPERIMENTS
        for p in plan.fold_files(m, b, "predictions.csv", folds)
    ]


def get_targets(wildcards):
    """A regress run's frame-wise labels; a classifier needs none."""
    return ["results/targets.h5"] if TASK == "regress" else []


def train_output_arguments(wildcards, output):
    """--out-<name> PATH for every file the train job writes (plan.train_outputs)."""
    return " ".join(
        f"--out-{name} {shlex.quote(path)}" for name, path in output.items()
    )


def onthefly_argument(wildcards, input):
    return f"--onthefly {shlex.join(input.onthefly)}" if input.onthefly else ""


def get_provenance(wildcards):
    return plan.provenance(config, wildcards.model, wildcards.backbone)


def get_preprocessing(wildcards):
    return plan.preprocessing(
        config, wildcards.model, wildcards.backbone, wildcards.fold
    )


def get_report_extras(wildcards):
    """What a regress run's report shows beside the metrics: the labels' coverage."""
    return ["results/qc/targets.csv"] if TASK == "regress" else []


def get_metrics():
    return [f"results/metrics/{m}_{b}.json" for m, b in EXPERIMENTS]


def get_curves():
    return [f"results/curves/{m}_{b}.json" for m, b in CURVES]


def get_indexes():
    return [f"results/features/{b}/index.csv" for b in config["backbones"]]


def get_benchmarks(wildcards):
    """The benchmark file of every job the report's numbers come from (plan.benchmark_jobs)."""
    jobs = plan.benchmark_jobs(config, EXPERIMENTS, CURVES, fold_ids(), SHARDS)
    return [expand(getattr(rules, rule).benchmark, **where)[0] for rule, where in jobs]


# Resources: what a cluster job asks for (plan's functions say how much).
gpus_for = plan.gpus_for


def backbone_gpus(wildcards):
    return plan.backbone_gpus(config, wildcards.backbone)


def shard_runtime(wildcards, attempt):
    return plan.shard_runtime(attempt)


def train_mem_mb(wildcards, input, attempt):
    return plan.train_mem_mb(input.size_mb, attempt)
