"""The `window_clips` stage: cut every aligned video into fixed-length clips.

Clips are `length` frames long and start every `stride` frames (16 and 8 by default, i.e.
an overlap of 8). Expression videos often end at the apex, so when the last regular window
stops short of the end, one more window is aligned to the last frame. A video shorter than
`length` gives one clip covering the whole video; readers pad it to `length` by repeating its
last frame (column `padded`).

Output `clips.csv`: video_id, subject, label, start, stop (exclusive), n_frames, padded.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.common import (
    VideoError,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    write_csv_atomic,
)
from pipeline.store import open_h5

log = logging.getLogger(__name__)

DEFAULTS = {"length": 16, "stride": 8}
COLUMNS = ["video_id", "subject", "label", "start", "stop", "n_frames", "padded"]


def window(n_frames: int, length: int = 16, stride: int = 8) -> list[tuple[int, int]]:
    """Start/stop frame pairs of the clips of a video with `n_frames` frames."""
    if n_frames < 1:
        raise VideoError("video has no usable frames")
    if length < 1 or stride < 1:
        raise ValueError(f"clip length and stride must be >= 1, got {length}, {stride}")
    if n_frames <= length:
        return [(0, n_frames)]
    starts = list(range(0, n_frames - length + 1, stride))
    if starts[-1] + length < n_frames:
        starts.append(n_frames - length)
    return [(s, s + length) for s in starts]


def average_windows(values, spans, n_frames: int) -> np.ndarray:
    """(n_frames, K) float64: each frame's mean over the windows (start, stop) that cover it,
    NaN where none does. `values[i]` is window i's value, either one (K,) for all its frames
    (class probabilities) or (L, K) per frame, of which its first stop − start rows count (a
    frame-wise output; padding beyond a short window's end is left out). Windows reaching past
    n_frames are cut there. What predict, export and task regress put back onto frames."""
    values = np.asarray(values, np.float64)
    total = np.zeros((n_frames, values.shape[-1]))
    count = np.zeros((n_frames, 1))
    for v, (start, stop) in zip(values, spans, strict=True):
        start, stop = int(start), min(int(stop), n_frames)
        total[start:stop] += v[: stop - start] if v.ndim == 2 else v
        count[start:stop] += 1
    with np.errstate(invalid="ignore"):
        return total / count  # 0 / 0: NaN, no window there


def clip_table(
    videos: pd.DataFrame, lengths: dict[str, int], length: int, stride: int
) -> pd.DataFrame:
    """One row per clip for the videos in `lengths` (video_id → aligned frame count)."""
    rows = []
    for rec in videos[videos.video_id.isin(lengths)].sort_values("video_id").to_dict("records"):
        n = lengths[rec["video_id"]]
        for start, stop in window(n, length, stride):
            rows.append(
                {
                    "video_id": rec["video_id"],
                    "subject": rec["subject"],
                    "label": rec["label"],
                    "start": start,
                    "stop": stop,
                    "n_frames": n,
                    "padded": int(stop - start < length),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Window aligned videos into clips.")
    ap.add_argument("--videos", required=True)
    ap.add_argument("--aligned", nargs="+", required=True, help="aligned/shard-*.h5")
    ap.add_argument("--out", required=True, help="clips.csv")
    ap.add_argument("--params", default="{}", help="the config's `clips` section as JSON")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    p = {**DEFAULTS, **parse_params(args.params)}
    lengths: dict[str, int] = {}
    for path in args.aligned:
        with open_h5(path) as f:
            lengths.update({vid: len(f[vid]["valid"]) for vid in f})
    table = clip_table(read_csv(args.videos), lengths, p["length"], p["stride"])
    if table.empty:
        raise VideoError("no video survived face detection and alignment; see results/qc")
    write_csv_atomic(args.out, table)
    log.info(
        "%d clips from %d videos (%d padded)",
        len(table),
        table.video_id.nunique(),
        table.padded.sum(),
    )


if __name__ == "__main__":
    run_main(main)
