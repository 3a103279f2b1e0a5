"""Video-level ablation on a finished run: which features, pooling, face region, frames and person
calibration carry the expression, measured on the run's own folds with intervals.

    .venv/bin/python bench/real_ablation.py RESULTS_DIR [--C 0.1]

RESULTS_DIR is a run's `results/` with the `geometry` and `fer-minixception` backbones
extracted (e.g. after `--configfile workflow/presets/real.yaml`), and `blendshapes` for its
rows. Every video is summarised over its frames (no clip windows), standardised inside each
fold with the training videos' statistics and classified by a multinomial logistic regression
(one fixed C for every row: nothing here is tuned on the test folds). Each row is one change
against the reference (geometry + fer-minixception, mean and std over the video's face frames,
every face frame weighted equally), in the three protocols of the pipeline:

- inductive: nothing about the test person;
- calibrated: each video standardised with its subject's other videos (never itself);
- per_subject: with all the subject's videos (transductive).

Every cell is the pooled video WAR with its 95 % interval (bootstrap over the test subjects and
their videos), and Δ against the reference in the same protocol: the paired difference with
its 95 % interval and the exact McNemar p over the videos (`pipeline.intervals`). A second
table compares person calibrations of the reference features + blendshapes: the person's other
videos (the pipeline's `calibrated`), a neutral reference taken from the first second of the
video itself or of the person's other videos (its mean frame subtracted from every frame).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.backbones.geometry import Geometry  # noqa: E402
from pipeline.backbones.mediapipe_face import LOWER_SHAPES, UPPER_SHAPES  # noqa: E402
from pipeline.intervals import interval, paired  # noqa: E402

PROTOCOLS = ("none", "calibrated", "per_subject")


def read_features(results: Path, backbone: str, required: bool = True) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(glob.glob(str(results / "features" / backbone / "shard-*.h5"))):
        with h5py.File(path) as f:
            for vid in f:
                out[vid] = f[vid][:].astype(np.float64)
    if not out and required:
        raise SystemExit(f"{results}/features/{backbone}: no feature files; extract it first")
    return out


def read_aligned(results: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(glob.glob(str(results / "aligned" / "shard-*.h5"))):
        with h5py.File(path) as f:
            for vid in f:
                out[vid] = {k: f[vid][k][:] for k in ("valid", "quality")}
                out[vid]["fps"] = float(f[vid].attrs["fps"])
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--C", type=float, default=0.1, help="inverse L2 strength, every row")
    args = ap.parse_args(argv)
    res = args.results
    videos = pd.read_csv(res / "folds.csv").drop_duplicates("video_id").set_index("video_id")
    geometry, fer = read_features(res, "geometry"), read_features(res, "fer-minixception")
    shapes = read_features(res, "blendshapes", required=False)
    aligned = read_aligned(res)
    ids = [v for v in videos.index if v in geometry and v in fer and aligned[v]["valid"].any()]
    ids = [v for v in ids if not shapes or v in shapes]
    labels = videos.loc[ids, "label"].astype(str).to_numpy()
    subjects = videos.loc[ids, "subject"].astype(str).to_numpy()
    folds = videos.loc[ids, "fold"].to_numpy()
    classes = sorted(set(labels))
    columns = Geometry().columns
    upper = [columns.index(c) for c in Geometry(region="upper").columns]
    lower = [columns.index(c) for c in Geometry(region="lower").columns]
    names = []
    if shapes:
        with h5py.File(sorted(glob.glob(str(res / "features/blendshapes/shard-*.h5")))[0]) as f:
            names = json.loads(f.attrs["describe"])["columns"]
    pick = {
        "upper": [i for i, n in enumerate(names) if n.startswith(UPPER_SHAPES)],
        "lower": [i for i, n in enumerate(names) if n.startswith(LOWER_SHAPES)],
    }

    def frames(vid, parts, geo_cols=None, every=False, region=None):
        ok = np.ones(len(aligned[vid]["valid"]), bool) if every else aligned[vid]["valid"] > 0
        blocks = []
        if "geometry" in parts:
            g = geometry[vid][ok]
            blocks.append(g if geo_cols is None else g[:, geo_cols])
        if "fer" in parts:
            blocks.append(fer[vid][ok])
        if "blendshapes" in parts:
            b = shapes[vid][ok][:, : len(names) - 1]  # without `found`
            blocks.append(b if region is None else b[:, pick[region]])
        return np.concatenate(blocks, 1)

    def design(parts=("geometry", "fer"), pool="mean+std", weight="equal", neutral=None, **kw):
        rows = []
        for vid in ids:
            f = frames(vid, parts, **kw)
            if neutral is not None:
                f = f - neutral(vid, parts, kw)
            w = np.ones(len(f))
            if weight == "quality":
                ok = aligned[vid]["valid"] > 0
                w = np.clip(aligned[vid]["quality"][ok].astype(np.float64), 1e-3, None)
            rows.append(summarise(f, w, pool))
        return np.stack(rows)

    def first_second(vid, parts, kw):
        f = frames(vid, parts, **kw)
        return f[: max(1, round(aligned[vid]["fps"]))].mean(0)

    def others_first_second(vid, parts, kw):
        s = videos.loc[vid, "subject"]
        mine = [v for v in ids if videos.loc[v, "subject"] == s and v != vid]
        return np.mean([first_second(v, parts, kw) for v in mine], axis=0)

    with_shapes = ("geometry", "fer", "blendshapes")
    rows = [
        ("reference: geometry + fer-minixception, mean+std over the face frames", design()),
        ("geometry only", design(("geometry",))),
        ("fer-minixception only", design(("fer",))),
        ("geometry, upper face only (brows, eyes, nose) + fer", design(geo_cols=upper)),
        ("geometry, lower face only (mouth, jaw) + fer", design(geo_cols=lower)),
        ("pooling: mean only", design(pool="mean")),
        ("pooling: mean, std, min, max, slope", design(pool="stats")),
        ("frames weighted by quality (detector score × visible face)", design(weight="quality")),
        ("every frame (faceless ones hold the nearest face's features)", design(every=True)),
    ]
    if shapes:
        up, low = {"region": "upper"}, {"region": "lower"}
        rows += [
            ("blendshapes only", design(("blendshapes",))),
            ("+ blendshapes", design(with_shapes)),
            (
                "+ blendshapes, upper face only (brows, eyes, cheek squint)",
                design(with_shapes, **up),
            ),
            ("+ blendshapes, lower face only (mouth, jaw)", design(with_shapes, **low)),
            (
                "upper face only: geometry, blendshapes + fer",
                design(with_shapes, geo_cols=upper, **up),
            ),
        ]
    print(
        f"{len(ids)} videos, {len(np.unique(subjects))} subjects, {len(np.unique(folds))} "
        f"folds, {len(classes)} classes; logistic regression C = {args.C}; pooled video WAR "
        "[95 % interval]; Δ = paired difference against the reference [95 %], McNemar p\n"
    )

    def table(pred):
        return pd.DataFrame({"subject": subjects, "video_id": ids, "label": labels, "pred": pred})

    def cell(pred, ref):
        ci = interval(table(pred), classes)["war"]
        text = f"{100 * ci['pooled']:.1f} [{100 * ci['low']:.0f}–{100 * ci['high']:.0f}]"
        if ref is None:
            return text
        d = paired(table(pred), table(ref), classes)
        return (
            f"{text}; Δ {100 * d['war_diff']:+.1f} [{100 * d['war_diff_low']:+.0f}, "
            f"{100 * d['war_diff_high']:+.0f}], p {d['mcnemar_p']:.2f}"
        )

    header = " | ".join("inductive" if p == "none" else p for p in PROTOCOLS)
    print(f"| variant | {header} |\n|---|" + "---|" * len(PROTOCOLS))
    reference = {}
    for name, x in rows:
        cells = []
        for protocol in PROTOCOLS:
            pred = cross_validate(x, labels, subjects, folds, protocol, args.C)
            cells.append(cell(pred, reference.get(protocol)))
            reference.setdefault(protocol, pred)
        print(f"| {name} | " + " | ".join(cells) + " |")

    parts = with_shapes if shapes else ("geometry", "fer")
    base = cross_validate(design(parts), labels, subjects, folds, "calibrated", args.C)
    print(
        f"\nPerson calibration of {' + '.join(parts)} (Δ against the person's other videos):\n"
        "\n| calibration | video WAR |\n|---|---|"
    )
    print(f"| the person's other videos (calibrated) | {cell(base, None)} |")
    for name, neutral in (
        ("neutral: the first second of the video itself", first_second),
        ("neutral: the first second of the person's other videos", others_first_second),
    ):
        x = design(parts, neutral=neutral)
        for protocol, label in (("none", ""), ("calibrated", ", then the other videos")):
            pred = cross_validate(x, labels, subjects, folds, protocol, args.C)
            print(f"| {name}{label} | {cell(pred, base)} |")


if __name__ == "__main__":
    main()
