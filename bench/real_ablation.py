"""Video-level ablation on a finished run: which features, pooling, face region, frame weighting
and person calibration carry the expression, measured on the run's own folds.

    .venv/bin/python bench/real_ablation.py RESULTS_DIR [--C 0.1]

RESULTS_DIR is a run's `results/` with the `geometry` and `fer-minixception` backbones
extracted (e.g. after `--configfile workflow/presets/real.yaml`). Every video is summarised
over all its frames with a face (no clip windows), standardised inside each fold with the
training videos' statistics and classified by a multinomial logistic regression (one fixed C
for every row: nothing here is tuned on the test folds). Each row is one change against the
reference (geometry + fer-minixception, mean and std over the video, every face frame
weighted equally), in the three protocols of the pipeline:

- inductive: nothing about the test person;
- calibrated: each video standardised with its subject's other videos (never itself);
- per_subject: with all the subject's videos (transductive).

Prints a Markdown table of video WAR and UAR (mean over folds), then per-class recall and
per-fold WAR of the reference.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.backbones.geometry import Geometry  # noqa: E402

PROTOCOLS = ("none", "calibrated", "per_subject")


def read_features(results: Path, backbone: str) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(glob.glob(str(results / "features" / backbone / "shard-*.h5"))):
        with h5py.File(path) as f:
            for vid in f:
                out[vid] = f[vid][:].astype(np.float64)
    if not out:
        raise SystemExit(f"{results}/features/{backbone}: no feature files; extract it first")
    return out


def read_aligned(results: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(glob.glob(str(results / "aligned" / "shard-*.h5"))):
        with h5py.File(path) as f:
            for vid in f:
                out[vid] = {k: f[vid][k][:] for k in ("valid", "quality")}
    return out


def summarise(frames: np.ndarray, weights: np.ndarray, pool: str) -> np.ndarray:
    """(T, D) frames → one vector: weighted mean (and std, min, max, slope)."""
    w = weights / weights.sum()
    mean = w @ frames
    if pool == "mean":
        return mean
    std = np.sqrt(np.maximum(w @ (frames - mean) ** 2, 0.0))
    if pool == "mean+std":
        return np.concatenate([mean, std])
    t = np.linspace(-1.0, 1.0, len(frames))
    slope = (t * w) @ (frames - mean) / max(float((t * t) @ w), 1e-9)
    return np.concatenate([mean, std, frames.min(0), frames.max(0), slope])


def calibrate(x: np.ndarray, subjects: np.ndarray, protocol: str) -> np.ndarray:
    if protocol == "none":
        return x
    out = np.empty_like(x)
    for i, subject in enumerate(subjects):
        mask = subjects == subject
        if protocol == "calibrated":
            mask = mask.copy()
            mask[i] = False
        mean, std = x[mask].mean(0), x[mask].std(0)
        out[i] = (x[i] - mean) / np.where(std > 1e-9, std, 1.0)
    return out


def cross_validate(x, labels, subjects, folds, protocol: str, C: float):
    from sklearn.linear_model import LogisticRegression

    x = calibrate(x, subjects, protocol)
    pred = np.empty(len(labels), dtype=object)
    for fold in np.unique(folds):
        test = folds == fold
        mean, std = x[~test].mean(0), x[~test].std(0)
        std = np.where(std > 1e-9, std, 1.0)
        clf = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
        clf.fit((x[~test] - mean) / std, labels[~test])
        pred[test] = clf.predict((x[test] - mean) / std)
    return pred


def scores(pred, labels, folds):
    wars, uars = [], []
    for fold in np.unique(folds):
        m = folds == fold
        wars.append(float((pred[m] == labels[m]).mean()))
        recalls = [float((pred[m & (labels == c)] == c).mean()) for c in np.unique(labels[m])]
        uars.append(float(np.mean(recalls)))
    return np.mean(wars), np.mean(uars), wars


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--C", type=float, default=0.1, help="inverse L2 strength, every row")
    args = ap.parse_args(argv)
    res = args.results
    videos = pd.read_csv(res / "folds.csv").drop_duplicates("video_id").set_index("video_id")
    geometry, fer = read_features(res, "geometry"), read_features(res, "fer-minixception")
    aligned = read_aligned(res)
    ids = [v for v in videos.index if v in geometry and v in fer and aligned[v]["valid"].any()]
    labels = videos.loc[ids, "label"].astype(str).to_numpy()
    subjects = videos.loc[ids, "subject"].astype(str).to_numpy()
    folds = videos.loc[ids, "fold"].to_numpy()
    columns = Geometry().columns
    upper = [columns.index(c) for c in Geometry(region="upper").columns]
    lower = [columns.index(c) for c in Geometry(region="lower").columns]

    def design(parts=("geometry", "fer"), pool="mean+std", weight="equal", geo_cols=None):
        rows = []
        for vid in ids:
            ok = aligned[vid]["valid"].astype(bool)
            blocks = []
            if "geometry" in parts:
                g = geometry[vid][ok]
                blocks.append(g if geo_cols is None else g[:, geo_cols])
            if "fer" in parts:
                blocks.append(fer[vid][ok])
            frames = np.concatenate(blocks, 1)
            w = np.ones(len(frames))
            if weight == "quality":
                w = np.clip(aligned[vid]["quality"][ok].astype(np.float64), 1e-3, None)
            rows.append(summarise(frames, w, pool))
        return np.stack(rows)

    rows = [
        ("reference: geometry + fer-minixception, mean+std over the video", design()),
        ("geometry only", design(("geometry",))),
        ("fer-minixception only", design(("fer",))),
        ("geometry, upper face only (brows, eyes, nose) + fer", design(geo_cols=upper)),
        ("geometry, lower face only (mouth, jaw) + fer", design(geo_cols=lower)),
        ("pooling: mean only", design(pool="mean")),
        ("pooling: mean, std, min, max, slope", design(pool="stats")),
        ("frames weighted by quality (detector score × visible face)", design(weight="quality")),
    ]
    print(
        f"{len(ids)} videos, {len(np.unique(subjects))} subjects, {len(np.unique(folds))} "
        f"folds, {len(np.unique(labels))} classes; logistic regression C = {args.C}\n"
    )
    header = " | ".join(f"{p} WAR / UAR" for p in PROTOCOLS)
    print(f"| variant | {header} |\n|---|" + "---|" * len(PROTOCOLS))
    for name, x in rows:
        cells = []
        for protocol in PROTOCOLS:
            war, uar, _ = scores(
                cross_validate(x, labels, subjects, folds, protocol, args.C), labels, folds
            )
            cells.append(f"{100 * war:.1f} / {100 * uar:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    x = rows[0][1]
    for protocol in ("none", "calibrated"):
        pred = cross_validate(x, labels, subjects, folds, protocol, args.C)
        _, _, wars = scores(pred, labels, folds)
        recall = {c: float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
        print(
            f"\nreference, {protocol}: per-class recall "
            + ", ".join(f"{c} {100 * r:.0f}" for c, r in recall.items())
            + "; per-fold WAR "
            + ", ".join(f"{100 * w:.0f}" for w in wars)
        )


if __name__ == "__main__":
    main()
