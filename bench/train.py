"""Benchmark of the model zoo: seconds per training epoch of every model on the demo features.

    .venv/bin/python bench/train.py [--epochs 3] [--fold 0] [--threads 1] [--models gru c3d ...]

Needs the demo's clips, folds and features (`make report`, or the DAG up to them: missing
ones are built first with `snakemake --cores 2`). For every model of the catalog, with its
settings from config.yaml (or the schema's defaults when the demo does not configure it),
on fold `--fold`'s training clips as the `train` stage loads them, in this one process:
each model first trains one warm-up epoch on one batch (allocator, kernels and caches warm,
not timed), then `--epochs` epochs are timed; the figure is the median seconds per epoch
(closed-form models: the median of `--epochs` whole fits, the same repetitions), clips per
second and the ratio to `gru` on hog (the baseline, measured in the same invocation, the same
way). Inner validation is off here: the figure is the cost of one pass over the training clips.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKBONE = {"vectors": "hog", "pixels": "pixels", "any": "hog"}


def ensure_demo(backbones: list[str], shards: int) -> None:
    targets = ["results/clips.csv", "results/folds.csv"] + [
        f"results/features/{b}/shard-{s}.h5" for b in backbones for s in range(shards)
    ]
    missing = [t for t in targets if not (ROOT / t).exists()]
    if missing:
        print(f"building {len(missing)} missing demo files with snakemake …", flush=True)
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", *missing],
            cwd=ROOT,
            check=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the DAG uses 1)")
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()

    import torch
    import yaml

    from pipeline import catalog
    from pipeline.augment import augmenter
    from pipeline.common import read_csv, seed_everything, set_threads
    from pipeline.engine import fit
    from pipeline.models import build_model, split_params
    from pipeline.splits import split

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    set_threads(args.threads)
    names = args.models or ["gru", *[m for m in catalog.MODELS if m != "gru"]]
    ensure_demo(sorted({BACKBONE[catalog.MODELS[m].kind] for m in names}), config["shards"])
    folds = read_csv(ROOT / "results/folds.csv")
    classes = sorted(folds.label.unique())
    train, _ = split(read_csv(ROOT / "results/clips.csv"), folds, args.fold)
    y = torch.tensor([classes.index(c) for c in train.label])
    length = config["clips"]["length"]

    from pipeline.store import ClipReader

    data = {}
    rows = []
    for name in names:
        backbone = BACKBONE[catalog.MODELS[name].kind]
        if backbone not in data:
            files = sorted((ROOT / f"results/features/{backbone}").glob("shard-*.h5"))
            data[backbone] = torch.from_numpy(ClipReader(files).clips(train, length))
        x = data[backbone]
        params = dict(config["models"].get(name) or {})
        params.update(epochs=args.epochs, val_subjects=0.0)
        seed_everything(0)
        model = build_model(name, len(classes), tuple(x.shape[1:]), params)
        training, _ = split_params(name, params)
        augment = augmenter(catalog.MODELS[name].kind, training.augment)
        batch = max(training.batch_size, len(classes))
        warm = build_model(name, len(classes), tuple(x.shape[1:]), params)
        fit(warm, x[:batch], y[:batch], replace(training, epochs=1), 0, "cpu", augment=augment)
        if model.closed_form:  # one call fits it: repeat the whole fit as often
            times = []
            for _ in range(args.epochs):
                model = build_model(name, len(classes), tuple(x.shape[1:]), params)
                t0 = time.perf_counter()
                fit(model, x, y, training, 0, "cpu", augment=augment)
                times.append(time.perf_counter() - t0)
            per_epoch = float(statistics.median(times))
        else:
            history = fit(model, x, y, training, 0, "cpu", augment=augment)
            per_epoch = float(history.seconds.median())
        rows.append((name, backbone, per_epoch, len(x) / per_epoch, model.closed_form))
        print(f"  {name:20s} {backbone:8s} {per_epoch:7.2f} s/epoch", flush=True)

    base = next(r[2] for r in rows if r[0] == "gru")
    print(
        f"\nfold {args.fold}: {len(train)} training clips of {length} frames, "
        f"{args.threads} torch thread(s), median of {args.epochs} epochs"
    )
    print(f"{'model':20s} {'backbone':8s} {'s/epoch':>8s} {'clips/s':>8s} {'× gru':>7s}")
    for name, backbone, sec, rate, closed in rows:
        note = "  (closed form: median whole fit)" if closed else ""
        print(f"{name:20s} {backbone:8s} {sec:8.2f} {rate:8.0f} {sec / base:7.2f}{note}")


if __name__ == "__main__":
    main()
