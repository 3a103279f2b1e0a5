import json
import os
import re
import shlex
import sys

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)

from pipeline import catalog, configcheck
from pipeline.common import ConfigError

# Unknown keys first (naming the valid ones), then the schema (types, ranges, defaults), then
# what the schema cannot express: pipeline/configcheck.py, unit-tested without Snakemake.
SCHEMA = configcheck.load_schema(configcheck.schema_path(workflow.basedir))
try:
    configcheck.drop_disabled(config)
    configcheck.refuse_unknown_keys(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None

validate(config, "../schemas/config.schema.yaml")

try:
    EXPERIMENTS = configcheck.check(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None

# The interpreter running Snakemake also runs the stages (the project's .venv); with
# `portable`, with PyTorch's, oneDNN's and MKL's kernels pinned to AVX2 (README, Evaluation
# protocol).
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
}
PY = shlex.quote(sys.executable)
if config["portable"]:
    PY = " ".join(["env", *(f"{k}={v}" for k, v in PORTABLE_ENV.items()), PY])
SHARDS = list(range(config["shards"]))
# Videos the dataset stage probes at once: up to 8, never more than this machine's cores (a
# cluster job asks for them: a request larger than a node would never start).
PROBE_THREADS = min(8, os.cpu_count() or 1)
CV = config["cv"]
DATASET = config["dataset"]
TASK = config["task"]  # classify | regress
DEMO_DIR = os.path.dirname(configcheck.DEMO_SHEET)


def fold_ids():
    """The folds every model is trained on: k for kfold; for loso (one per subject) and file
    (the split's) they are known once `folds.csv` exists (the `folds` checkpoint), so a dry
    run before it stops there."""
    if CV["method"] in ("loso", "file"):
        import pandas as pd

        path = checkpoints.folds.get().output.folds
        return sorted(int(f) for f in pd.read_csv(path, usecols=["fold"]).fold.unique())
    return list(range(CV["k"]))


def get_split_file():
    """The split of cv.method file: cv.file, else the label sheet (its fold column)."""
    if CV["method"] != "file":
        return []
    return [CV["file"] or get_sheet()]


_BACKBONE = (
    "(?:" + "|".join(map(re.escape, catalog.BACKBONES)) + r")(?:@[A-Za-z0-9_-]+)?"
)


wildcard_constraints:
    shard=r"\d+",
    fold=r"\d+",
    # a model variant is "name@label"; a fused backbone "a+b"
    model="(?:" + "|".join(catalog.MODELS) + r")(?:@[A-Za-z0-9_-]+)?",
    backbone=_BACKBONE + "(?:" + re.escape(catalog.FUSE) + _BACKBONE + ")*",


def section(*keys):
    """A config section as canonical JSON: the stage's only view of the config."""
    value = config
    for key in keys:
        value = value[key]
    return json.dumps(value, sort_keys=True)


def get_sheet():
    """The label sheet: the user's, or the one an adapter builds from dataset.root."""
    if DATASET["format"] == "sheet":
        return DATASET["sheet"]
    return "results/dataset/sheet.csv"


def get_reference_photos(wildcards):
    """The sheet's reference photos: a new photo re-runs the dataset rule and what follows."""
    from pipeline.datasets.sheet import reference_photos

    if DATASET["format"] != "sheet":
        return []
    return reference_photos(DATASET["sheet"], DATASET.get("root"))


def get_dataset_root():
    return [DATASET["root"]] if DATASET["format"] != "sheet" else []


def get_backbone_params(wildcards):
    return json.dumps(config["backbones"][wildcards.backbone] or {}, sort_keys=True)


def backbone_files(wildcards):
    """The model or weights file a backbone's settings name (onnx's `path`, `weights`): an
    input, so replacing the file at the same path extracts the features again."""
    settings = config["backbones"][wildcards.backbone] or {}
    return [
        os.path.expanduser(settings[k]) for k in ("path", "weights") if settings.get(k)
    ]


def get_model_params(wildcards):
    return json.dumps(config["models"][wildcards.model] or {}, sort_keys=True)


SHARED_BACKBONES = [b for b, e in catalog.BACKBONES.items() if not e.per_fold]
FOLD_BACKBONES = [b for b, e in catalog.BACKBONES.items() if e.per_fold]


def named(backbones):
    """A wildcard constraint matching these backbones and their variants ("onnx@label")."""
    return "(?:" + "|".join(map(re.escape, backbones)) + r")(?:@[A-Za-z0-9_-]+)?"


def part_features(backbone, folds):
    """The feature files of one (unfused) backbone for `folds` (per-fold backbones have their
    own files for every fold)."""
    if catalog.backbone_entry(backbone).per_fold:
        return expand(
            "results/features/{backbone}/fold{fold}/shard-{shard}.h5",
            backbone=backbone,
            fold=folds,
            shard=SHARDS,
        )
    return expand(
        "results/features/{backbone}/shard-{shard}.h5", backbone=backbone, shard=SHARDS
    )


def get_features(wildcards):
    """A fold's features: of every backbone a fused name "a+b" joins, in its order."""
    return [
        path
        for part in catalog.parts(wildcards.backbone)
        for path in part_features(part, [wildcards.fold])
    ]


def get_all_features(wildcards):
    """Every feature file of a backbone (all folds for per-fold backbones)."""
    return part_features(wildcards.backbone, fold_ids())


def model_normalize(model):
    """A model's calibration protocol: its own `normalize`, else cv.normalize."""
    return (config["models"][model] or {}).get("normalize") or CV["normalize"]


def backbone_section(backbone):
    """The config of a backbone; of a fused one, every part's by name."""
    names = catalog.parts(backbone)
    if len(names) == 1:
        return config["backbones"][backbone] or {}
    return {name: config["backbones"][name] or {} for name in names}


def get_predictions(wildcards):
    return expand(
        "results/models/{model}/{backbone}/fold{fold}/predictions.csv",
        model=wildcards.model,
        backbone=wildcards.backbone,
        fold=fold_ids(),
    )


def get_fold_files(name):
    def files(wildcards):
        return expand(
            "results/models/{model}/{backbone}/fold{fold}/" + name,
            model=wildcards.model,
            backbone=wildcards.backbone,
            fold=fold_ids(),
        )

    return files


get_onthefly = get_fold_files("onthefly.csv")
get_histories = get_fold_files("history.csv")


def get_provenance(wildcards):
    """The config a metrics file depends on (its own model and backbone sections only, so that
    adding a model leaves the others' metrics and hashes alone)."""
    return json.dumps(
        {
            "model": config["models"][wildcards.model] or {},
            "backbone": backbone_section(wildcards.backbone),
            # dataset.strict changes whether the run stops, never a number
            "dataset": {k: v for k, v in DATASET.items() if k != "strict"},
            "face": config["face"],
            "frontalize": config["frontalize"],
            "cv": config["cv"],
            "clips": config["clips"],
            "train": config["train"],
            **(
                {"task": TASK, "regress": config["regress"]}
                if TASK == "regress"
                else {}
            ),
        },
        sort_keys=True,
    )


def get_preprocessing(wildcards):
    """Everything before the model, stored in model.pt so that `pipeline.predict` repeats it."""

    def spec(name):
        out = {"name": name, "params": config["backbones"][name] or {}}
        if catalog.backbone_entry(name).per_fold:
            out["checkpoint"] = (
                f"results/backbones/{name}/fold{wildcards.fold}/model.pt"
            )
        return out

    names = catalog.parts(wildcards.backbone)
    backbone = (
        spec(names[0])
        if len(names) == 1
        else {
            "name": wildcards.backbone,
            "parts": [spec(name) for name in names],
        }
    )
    return json.dumps(
        {
            "decode": {k: DATASET[k] for k in ("folder_fps", "target_fps")},
            "face": config["face"],
            "frontalize": config["frontalize"],
            "clips": config["clips"],
            "backbone": backbone,
            "normalize": model_normalize(wildcards.model),
        },
        sort_keys=True,
    )


def get_vector_features(wildcards):
    """Every feature file of the configured vector backbones (all folds for per-fold ones):
    the exporter takes the class probabilities of those that give them."""
    return [
        path
        for b in config["backbones"]
        if catalog.backbone_entry(b).kind == catalog.VECTORS
        for path in part_features(b, fold_ids())
    ]


def get_all_predictions(wildcards):
    """The test-clip predictions of every (model, backbone) pair and fold."""
    return [
        path
        for model, backbone in EXPERIMENTS
        for path in expand(
            "results/models/{model}/{backbone}/fold{fold}/predictions.csv",
            model=model,
            backbone=backbone,
            fold=fold_ids(),
        )
    ]


def get_report_extras(wildcards):
    """What a regress run's report shows beside the metrics: the labels' coverage."""
    return ["results/qc/targets.csv"] if TASK == "regress" else []


def get_metrics():
    return [f"results/metrics/{m}_{b}.json" for m, b in EXPERIMENTS]


# With curve.subjects: results retrained on subsets of each fold's training subjects (those
# curve.models names); not on a backbone trained per fold (pipeline.curve).
CURVES = configcheck.curve_pairs(config, EXPERIMENTS)


def get_curve_features(wildcards):
    """Every fold's features of a (possibly fused) backbone none of whose parts is per fold."""
    return [
        path
        for part in catalog.parts(wildcards.backbone)
        for path in part_features(part, fold_ids())
    ]


def get_curves():
    return [f"results/curves/{m}_{b}.json" for m, b in CURVES]


def get_indexes():
    return expand(
        "results/features/{backbone}/index.csv", backbone=list(config["backbones"])
    )


def get_benchmarks(wildcards):
    """The benchmark file of every job the report's numbers come from (the runtime rule's
    inputs). A benchmark file is an output of its job: deleting one reruns that job. The
    demo generator is left out (it is not part of a run on real data)."""
    configured = list(config["backbones"])
    shared = [b for b in configured if catalog.base(b) in SHARED_BACKBONES]
    per_fold = [b for b in configured if catalog.base(b) in FOLD_BACKBONES]
    folds = fold_ids()
    files = [rules.adapt_dataset.benchmark] if DATASET["format"] != "sheet" else []
    files += [
        rules.dataset.benchmark,
        rules.audit.benchmark,
        rules.audit_gate.benchmark,
        rules.window_clips.benchmark,
        rules.folds.benchmark,
    ]
    files += expand(rules.detect_faces.benchmark, shard=SHARDS)
    files += expand(rules.frontalize.benchmark, shard=SHARDS)
    files += expand(rules.extract_features.benchmark, backbone=shared, shard=SHARDS)
    files += expand(rules.train_backbone.benchmark, backbone=per_fold, fold=folds)
    files += expand(
        rules.extract_fold_features.benchmark,
        backbone=per_fold,
        fold=folds,
        shard=SHARDS,
    )
    files += expand(rules.feature_index.benchmark, backbone=configured)
    if TASK == "regress":
        files.append(rules.targets.benchmark)
    for model, backbone in EXPERIMENTS:
        files += expand(
            rules.train.benchmark, model=model, backbone=backbone, fold=folds
        )
        files.append(
            expand(rules.evaluate.benchmark, model=model, backbone=backbone)[0]
        )
    for model, backbone in CURVES:
        files += expand(rules.curve.benchmark, model=model, backbone=backbone)
    files += [
        rules.compare.benchmark,
        rules.qc_faces.benchmark,
        rules.qc_skipped.benchmark,
    ]
    return files


# Resources (mem_mb in MB, runtime in minutes) are what a cluster job asks for; locally they
# only matter with --resources. Override them per rule in a profile (set-resources).
def gpus_for(device):
    """One GPU for a job whose device setting asks for CUDA; `auto` and `cpu` ask for none."""
    return 1 if str(device).startswith("cuda") else 0


def backbone_gpus(wildcards):
    return gpus_for(
        (config["backbones"][wildcards.backbone] or {}).get("device", "auto")
    )


def shard_runtime(wildcards, attempt):
    """Per-shard stages: two hours, doubled on each retry (a shard resumes where it stopped)."""
    return 120 * 2 ** (attempt - 1)


def train_mem_mb(wildcards, input, attempt):
    """Training holds its fold's clips in memory: ~12 × the compressed features, plus torch."""
    return int((2000 + 12 * input.size_mb) * attempt)
