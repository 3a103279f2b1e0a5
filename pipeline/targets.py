"""The `targets` stage (task: regress): every video's continuous labels on its own frames.

Each video's annotation file (`pipeline.datasets.annotations`, already checked by the dataset
stage) is carried onto the presentation times of the frames the face stage decoded, so that
row t of the targets is frame t of the aligned crops, the features and the clips: linear
between samples at most `dataset.annotation.max_gap` seconds apart, NaN elsewhere (never
invented: frames before the first sample, after the last, in longer gaps stay unlabelled and
count in no loss and no metric). Frame-indexed files are timed with the source video's frame
rate (`source_fps` of videos.csv), so decoding at a lower `target_fps` keeps them aligned.

Outputs:

    targets.h5            /<video_id>/values (T, D) float32, NaN: unlabelled; file attribute
                          `dimensions` (the D names, in order)
    qc/targets.csv        video_id, frames, and per dimension the labelled fraction and the
                          longest unlabelled run in seconds
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import h5py
import numpy as np
import pandas as pd

from pipeline.common import (
    SheetError,
    atomic_path,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    write_csv_atomic,
)
from pipeline.continuous import resample
from pipeline.datasets.annotations import read_all
from pipeline.store import open_h5

log = logging.getLogger(__name__)

DEFAULTS = {"dimensions": None, "range": None, "missing": [], "max_gap": 1.0, "row_is_frame": False}


def longest_gap(labelled: np.ndarray, times: np.ndarray) -> float:
    """The longest run of unlabelled frames, in seconds (0 when every frame is labelled)."""
    best, start = 0.0, None
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    for t, known in enumerate(np.append(labelled, True)):
        if not known and start is None:
            start = t
        elif known and start is not None:
            best = max(best, float(times[t - 1] - times[start]) + step)
            start = None
    return round(best, 3)


def build_targets(
    videos: pd.DataFrame, frame_times: dict[str, np.ndarray], params: dict
) -> tuple[dict[str, np.ndarray], list[str], pd.DataFrame]:
    """(video_id → (T, D) targets, the dimension names, the QC table) for the videos that
    have frame times (those the face stage kept)."""
    p = {**DEFAULTS, **params}
    rows = videos[videos.video_id.isin(frame_times)].sort_values("video_id")
    if "annotation" not in rows.columns or rows.annotation.isna().any():
        missing = rows.video_id[rows.get("annotation", pd.Series(index=rows.index)).isna()]
        raise SheetError(
            f"task: regress needs an annotation file for every video; none for "
            f"{', '.join(missing.head(10))}{' …' if len(missing) > 10 else ''} (sheet column "
            "`annotation`)"
        )
    found = read_all(
        list(rows.annotation), p["dimensions"], p["range"], p["missing"], p["row_is_frame"]
    )
    dimensions = found[0].dimensions if found else list(p["dimensions"] or [])
    targets, qc = {}, []
    for rec, annotation in zip(rows.to_dict("records"), found, strict=True):
        if annotation.dimensions != dimensions:
            raise SheetError(
                f"{annotation.path}: dimensions {annotation.dimensions} differ from "
                f"{dimensions} of the other files; name them with dataset.annotation.dimensions"
            )
        times = np.asarray(frame_times[rec["video_id"]], np.float64)
        fps = float(rec.get("source_fps") or rec.get("fps") or 0) or None
        values = resample(annotation.seconds(fps), annotation.values, times, p["max_gap"])
        targets[rec["video_id"]] = values
        row = {"video_id": rec["video_id"], "frames": len(times)}
        for d, name in enumerate(dimensions):
            known = np.isfinite(values[:, d])
            row[f"{name}_labelled"] = round(float(known.mean()) if len(known) else 0.0, 4)
            row[f"{name}_longest_gap_s"] = longest_gap(known, times)
        qc.append(row)
    return targets, dimensions, pd.DataFrame(qc)


def frame_times_of(paths: Sequence[str]) -> dict[str, np.ndarray]:
    """video_id → the presentation times of its decoded frames, from the face shards."""
    times = {}
    for path in paths:
        with open_h5(path) as f:
            times.update({vid: f[vid]["time"][:] for vid in f})
    return times


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Continuous labels on every video's frames.")
    ap.add_argument("--videos", required=True)
    ap.add_argument("--faces", nargs="+", required=True, help="faces/shard-*.h5")
    ap.add_argument("--params", default="{}", help="dataset.annotation as JSON")
    ap.add_argument("--out", required=True, help="targets.h5")
    ap.add_argument("--qc", required=True, help="qc/targets.csv")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    targets, dimensions, qc = build_targets(
        read_csv(args.videos), frame_times_of(args.faces), parse_params(args.params)
    )
    if not targets:
        raise SheetError("no video survived face detection: no targets to write")
    with atomic_path(args.out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["dimensions"] = list(dimensions)
        for vid, values in targets.items():
            f.create_group(vid).create_dataset("values", data=values)
    write_csv_atomic(args.qc, qc)
    labelled = np.mean([np.isfinite(v).mean() for v in targets.values()])
    log.info(
        "%d videos, dimensions %s, %.1f %% of frames labelled",
        len(targets),
        ", ".join(dimensions),
        100 * labelled,
    )


if __name__ == "__main__":
    run_main(main)
