"""What the DAG asks of each job, computed from the config in plain, tested Python.

`workflow/rules/common.smk` forwards to these functions; the Snakefile imports this module
when it parses, so it imports neither torch nor Snakemake.

- `patterns()`: the wildcard constraints of model, backbone and per-kind backbone names
  (catalog names escaped, variants "name@label", fused backbones "a+b").
- `section`, `model_params`, `backbone_params`: a config section as canonical JSON, the only
  view of the config a stage gets.
- `model_normalize`: a model's person-calibration protocol.
- `provenance`: what a metrics file depends on (its own model and backbone only).
- `preprocessing`: everything before the model, stored in model.pt for prediction
  (`settings.Preprocessing`).
- `feature_files`, `fold_files`: the paths a job reads, for any backbone (fused, per fold).
- `benchmark_jobs`: the rule and wildcards of every job whose benchmark file the report's
  run-time table reads.
- `video_files`, `untracked_state`, `shard_inputs`: the videos as input files, so that one
  replaced in place re-runs the probe and its own shard's face job.
- `audit_stop`: the audit's findings repeated at the end of a run it stopped.
- `interpreter`, the resources a cluster job asks for (`gpus_for`, `train_mem_mb`, …).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shlex
from pathlib import Path

from pipeline import catalog
from pipeline.common import shard_of
from pipeline.settings import Preprocessing

VARIANT = r"(?:@[A-Za-z0-9_-]+)?"


def named(names) -> str:
    """A pattern matching these names and their variants ("onnx@label")."""
    return "(?:" + "|".join(map(re.escape, names)) + ")" + VARIANT


def patterns() -> dict[str, str]:
    """Wildcard constraints: model (and variants), backbone (and variants, fused with "+"),
    shared and per-fold backbones."""
    one = named(catalog.BACKBONES)
    return {
        "model": named(catalog.MODELS),
        "backbone": one + "(?:" + re.escape(catalog.FUSE) + one + ")*",
        "shared": named(b for b, e in catalog.BACKBONES.items() if not e.per_fold),
        "per_fold": named(b for b, e in catalog.BACKBONES.items() if e.per_fold),
    }


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def section(config: dict, *keys: str) -> str:
    """A config section as canonical JSON."""
    value = config
    for key in keys:
        value = value[key]
    return canonical(value)


def model_params(config: dict, model: str) -> str:
    return canonical(config["models"][model] or {})


def backbone_params(config: dict, backbone: str) -> str:
    return canonical(config["backbones"][backbone] or {})


# The settings that only the audit (labels) or the targets rule (annotation) read, or that only
# decide whether the run stops (strict): not the dataset rule's, so changing them re-runs no
# video stage.
AUDIT_KEYS = ("annotation", "labels", "label_aliases", "strict")


def dataset_params(config: dict) -> str:
    """What the dataset rule (probing the videos) reads."""
    return canonical({k: v for k, v in config["dataset"].items() if k not in AUDIT_KEYS})


def audit_params(config: dict) -> str:
    """What the audit reads: the labels and what decides whether folds can be made."""
    dataset, cv = config["dataset"], config["cv"]
    return canonical(
        {
            "labels": dataset["labels"],
            "label_aliases": dataset.get("label_aliases") or {},
            "cv": {k: cv[k] for k in ("method", "k")},
            "clip_length": config["clips"]["length"],
            "task": config["task"],
        }
    )


TRAIN_MODULES = {"classify": "pipeline.train", "regress": "pipeline.regression.train"}
EVALUATE_MODULES = {"classify": "pipeline.evaluate", "regress": "pipeline.regression.evaluate"}


def train_outputs(task: str) -> dict[str, str]:
    """The files a train job writes: a classifier adds its on-the-fly predictions."""
    folder = "results/models/{model}/{backbone}/fold{fold}/"
    out = {name: folder + f"{name}.csv" for name in ("history", "predictions")}
    out = {"weights": folder + "model.pt", **out}
    if task == "classify":
        out["onthefly"] = folder + "onthefly.csv"
    return out


def task_arguments(config: dict, stage: str) -> str:
    """The command-line arguments one task's stage has beside those every task shares (the
    train rule's outputs and inputs are named by train_outputs and its input function)."""
    if stage == "train" and config["task"] == "regress":
        return f"--targets results/targets.h5 --loss {config['regress']['loss']}"
    return ""


def model_normalize(config: dict, model: str) -> str:
    """A model's calibration protocol: its own `normalize`, else cv.normalize."""
    return (config["models"][model] or {}).get("normalize") or config["cv"]["normalize"]


def backbone_section(config: dict, backbone: str) -> dict:
    """The config of a backbone; of a fused one, every part's by name."""
    names = catalog.parts(backbone)
    if len(names) == 1:
        return config["backbones"][backbone] or {}
    return {name: config["backbones"][name] or {} for name in names}


def provenance(config: dict, model: str, backbone: str) -> str:
    """The config a metrics file depends on (its own model and backbone sections only, so
    that adding a model leaves the others' metrics and hashes alone)."""
    task = config["task"]
    return canonical(
        {
            "model": config["models"][model] or {},
            "backbone": backbone_section(config, backbone),
            # dataset.strict changes whether the run stops, never a number
            "dataset": {k: v for k, v in config["dataset"].items() if k != "strict"},
            "face": config["face"],
            "frontalize": config["frontalize"],
            "cv": config["cv"],
            "clips": config["clips"],
            "train": config["train"],
            **({"task": task, "regress": config["regress"]} if task == "regress" else {}),
        }
    )


def preprocessing(config: dict, model: str, backbone: str, fold: int | str) -> str:
    """Everything before the model, as JSON for model.pt (`settings.Preprocessing`)."""
    return Preprocessing.from_config(config, backbone, model_normalize(config, model), fold).json()


def benchmark_jobs(
    config: dict,
    experiments: list[tuple[str, str]],
    curves: list[tuple[str, str]],
    folds: list[int],
    shards: list[int],
) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job the report's numbers come from, whose benchmark files
    the runtime rule reads (a benchmark file is an output of its job: deleting one reruns that
    job). The demo generator is left out (it is not part of a run on real data)."""
    configured = list(config["backbones"])
    per_fold = [b for b in configured if catalog.backbone_entry(b).per_fold]
    shared = [b for b in configured if b not in per_fold]
    jobs = [("adapt_dataset", {})] if config["dataset"]["format"] != "sheet" else []
    jobs += [(rule, {}) for rule in ("dataset", "audit", "audit_gate", "window_clips", "folds")]
    jobs += [(rule, {"shard": s}) for rule in ("detect_faces", "frontalize") for s in shards]
    jobs += [("extract_features", {"backbone": b, "shard": s}) for b in shared for s in shards]
    jobs += [("train_backbone", {"backbone": b, "fold": f}) for b in per_fold for f in folds]
    jobs += [
        ("extract_fold_features", {"backbone": b, "fold": f, "shard": s})
        for b in per_fold
        for f in folds
        for s in shards
    ]
    jobs += [("feature_index", {"backbone": b}) for b in configured]
    if config["task"] == "regress":
        jobs.append(("targets", {}))
    for model, backbone in experiments:
        pair = {"model": model, "backbone": backbone}
        jobs += [("train", {**pair, "fold": f}) for f in folds]
        jobs.append(("evaluate", pair))
    jobs += [("curve", {"model": m, "backbone": b}) for m, b in curves]
    jobs += [("compare", {}), ("qc_faces", {}), ("qc_skipped", {})]
    return jobs


def feature_files(backbone: str, folds, shards) -> list[str]:
    """The feature files of `backbone` (of every part of a fused "a+b", in its order) for
    `folds`: a per-fold backbone has its own files in every fold."""
    out = []
    for part in catalog.parts(backbone):
        if catalog.backbone_entry(part).per_fold:
            out += [f"results/features/{part}/fold{f}/shard-{s}.h5" for f in folds for s in shards]
        else:
            out += [f"results/features/{part}/shard-{s}.h5" for s in shards]
    return out


def vector_feature_files(config: dict, folds, shards) -> list[str]:
    """Every feature file of the configured vector backbones (all folds for per-fold ones)."""
    return [
        path
        for b in config["backbones"]
        if catalog.backbone_entry(b).kind == catalog.VECTORS
        for path in feature_files(b, folds, shards)
    ]


def fold_files(model: str, backbone: str, name: str, folds) -> list[str]:
    """A trained result's file `name` in every fold."""
    return [f"results/models/{model}/{backbone}/fold{f}/{name}" for f in folds]


def backbone_files(config: dict, backbone: str) -> list[str]:
    """The model or weights file a backbone's settings name (onnx's `path`, `weights`): an
    input, so replacing the file at the same path extracts the features again."""
    settings = config["backbones"][backbone] or {}
    return [os.path.expanduser(settings[k]) for k in ("path", "weights") if settings.get(k)]


def sheet(config: dict) -> str:
    """The label sheet: the user's, or the one an adapter builds from dataset.root."""
    dataset = config["dataset"]
    return dataset["sheet"] if dataset["format"] == "sheet" else "results/dataset/sheet.csv"


def dataset_root(config: dict) -> list[str]:
    """The dataset folder an adapter reads (a sheet names its files itself)."""
    dataset = config["dataset"]
    return [dataset["root"]] if dataset["format"] != "sheet" else []


# Snakemake 9 reads "<name>" in a file's path as a path variable: such a path cannot be an input
# file (a video named "<script>.mp4" stopped the DAG), so it is followed another way (below).
PATHVAR = re.compile(r"<[a-z][a-z0-9_]*>")


def _sheet_photos(config: dict) -> list[str]:
    from pipeline.datasets.sheet import reference_photos  # pandas and PyAV: at job time only

    dataset = config["dataset"]
    if dataset["format"] != "sheet":
        return []
    return reference_photos(dataset["sheet"], dataset.get("root"))


def reference_photos(config: dict) -> list[str]:
    """The sheet's reference photos: a new photo re-runs the dataset rule and what follows."""
    return [f for f in _sheet_photos(config) if not PATHVAR.search(f)]


def _dataset_files(config: dict) -> list[str]:
    from pipeline.datasets.sheet import column_files  # pandas and PyAV: at job time only

    dataset = config["dataset"]
    if dataset["format"] == "sheet":
        paths = [path for _, path in column_files(dataset["sheet"], "path", dataset.get("root"))]
    else:
        paths = [Path(dataset["root"])]
    return sorted({f for path in paths for f in _files(path)})


def video_files(config: dict) -> list[str]:
    """Every file the dataset is read from: the sheet's videos (a folder of frames: the files
    in it) or, for an adapter, every file under dataset.root. Input files of the dataset rule
    (a sheet names its videos, no rule writes them): a video replaced in place (same path, new
    content) is newer than the probe's table and probes again, a video added or removed changes
    the rule's input files; `shard_inputs` then re-runs that video's shard alone. Not those
    whose path Snakemake reads as a path variable: `untracked_state` follows them."""
    return [f for f in _dataset_files(config) if not PATHVAR.search(f)]


def untracked_state(config: dict) -> str:
    """A digest of the path, size and modification time of the videos and reference photos
    whose path cannot be an input file (PATHVAR); "" when there are none. A param of the
    dataset rule, so that such a file, replaced, probes again too."""
    odd = [f for f in [*_dataset_files(config), *_sheet_photos(config)] if PATHVAR.search(f)]
    if not odd:
        return ""
    digest = hashlib.sha1()
    for name in odd:
        try:
            st = os.stat(name)
            digest.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\tmissing\n".encode())
    return digest.hexdigest()[:16]


def shard_inputs(probed: str, shard: int, shards: int) -> tuple[list[str], bool]:
    """(files, ancient): the files the face job of `shard` reads besides the probe's table (its
    videos, a folder of frames as the files in it, and their reference photos), and whether
    the table is an `ancient` input. The files are its input files, so that a video replaced in
    place, added or removed re-runs its own shard, and another shard's video, a label or a
    subject none. Paths inside the working folder are relative to it (the table's are
    absolute), so a moved or copied project folder re-runs nothing. A file Snakemake cannot
    take (PATHVAR) makes the table a plain input: any new table then re-runs the shard, which
    is how such a video, replaced, is seen."""
    files: set[str] = set()
    with open(probed, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if shard_of(row["video_id"], shards) == shard:
                files.update(_files(Path(row["path"])))
                if row.get("reference"):
                    files.add(row["reference"])
    here = Path.cwd()
    files = {os.path.relpath(f, here) if Path(f).is_relative_to(here) else f for f in files}
    return sorted(f for f in files if not PATHVAR.search(f)), not any(map(PATHVAR.search, files))


def _files(path: Path) -> list[str]:
    """A file, or the files under a folder."""
    if not path.is_dir():
        return [str(path)] if path.exists() else []
    found = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        found += [os.path.join(folder, name) for name in sorted(names)]
    return found


def split_arguments(config: dict) -> str:
    return " ".join(f"--split {shlex.quote(p)}" for p in split_files(config))


def split_files(config: dict) -> list[str]:
    """The split of cv.method file: cv.file, else the label sheet (its fold column)."""
    cv = config["cv"]
    return [cv["file"] or sheet(config)] if cv["method"] == "file" else []


def audit_stop(
    since: float, log: str = "logs/audit_gate.log", passed: str = "results/qc/audit_passed.txt"
) -> str:
    """The dataset audit's listing when it stopped this run (its gate's log written since
    `since`, no pass file), to end the run's output with, below Snakemake's error block and
    its ~60 lines of jobs; "" otherwise."""
    try:
        if os.path.exists(passed) or os.path.getmtime(log) < since:
            return ""
        with open(log, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return ""
    if "error: dataset audit" not in text:
        return ""
    rule = "=" * 78
    body = text[text.index("error: dataset audit") :].rstrip()
    return f"\n{rule}\nThe dataset audit stopped the run before any face job ({log}):\n{body}\n{rule}\n"


# `portable: true`: PyTorch's, oneDNN's and MKL's kernels pinned to AVX2, as on any AVX2 CPU.
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
}


def interpreter(config: dict, executable: str) -> str:
    """The command that runs the stages: the interpreter running Snakemake (the project's
    .venv), under PORTABLE_ENV with `portable`."""
    python = shlex.quote(executable)
    if config["portable"]:
        return " ".join(["env", *(f"{k}={v}" for k, v in PORTABLE_ENV.items()), python])
    return python


# Resources (mem_mb in MB, runtime in minutes) are what a cluster job asks for; locally they
# only matter with --resources. A profile overrides them per rule (set-resources).
def probe_threads() -> int:
    """Videos the dataset stage probes at once: up to 8, never more than this machine's
    cores (a cluster job asks for them: a request larger than a node would never start)."""
    return min(8, os.cpu_count() or 1)


def gpus_for(device) -> int:
    """One GPU for a job whose device setting asks for CUDA; `auto` and `cpu` ask for none."""
    return 1 if str(device).startswith("cuda") else 0


def backbone_gpus(config: dict, backbone: str) -> int:
    return gpus_for((config["backbones"][backbone] or {}).get("device", "auto"))


def shard_runtime(attempt: int) -> int:
    """Per-shard stages: two hours, doubled on each retry (a shard resumes where it stopped)."""
    return 120 * 2 ** (attempt - 1)


def train_mem_mb(features_mb: float, attempt: int) -> int:
    """Training holds its fold's clips in memory: ~12 × the compressed features, plus torch."""
    return int((2000 + 12 * features_mb) * attempt)
