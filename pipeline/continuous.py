"""Continuous affect over time: agreement metrics and labels resampled onto frames.

Metrics compare a true and a predicted series on the samples where both are known (NaN marks
an unlabelled frame or a frame without a prediction; those pairs are left out, never filled):

- `ccc`: Lin's concordance correlation coefficient, 2·cov(y, p) / (var y + var p + (ȳ − p̄)²)
  with population (co)variances. 1 is perfect agreement; it falls with any shift, scale or
  decorrelation. Undefined (NaN) below two pairs, or when both series are the same constant
  (0 / 0); a constant prediction of a varying truth scores 0.
- `pearson`: Pearson's r (NaN when either side is constant).
- `rmse`: root mean squared error.

`resample` carries an annotation's samples onto a video's frame times: linear interpolation
between two samples at most `max_gap` seconds apart, NaN elsewhere (before the first sample,
after the last, inside longer gaps): a value is never invented where the annotators gave none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _known(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, np.float64).ravel()
    p = np.asarray(y_pred, np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"series of different lengths: {len(y)} and {len(p)}")
    both = np.isfinite(y) & np.isfinite(p)
    return y[both], p[both]


def ccc(y_true, y_pred) -> float:
    """Lin's concordance correlation coefficient over the pairs where both are finite."""
    y, p = _known(y_true, y_pred)
    if len(y) < 2:
        return float("nan")
    my, mp = y.mean(), p.mean()
    cov = np.mean((y - my) * (p - mp))
    denominator = y.var() + p.var() + (my - mp) ** 2
    if denominator <= 0:
        return float("nan")
    return float(2 * cov / denominator)


def pearson(y_true, y_pred) -> float:
    """Pearson's r over the pairs where both are finite (NaN if either side is constant)."""
    y, p = _known(y_true, y_pred)
    if len(y) < 2:
        return float("nan")
    sy, sp = y.std(), p.std()
    if sy == 0 or sp == 0:
        return float("nan")
    return float(np.mean((y - y.mean()) * (p - p.mean())) / (sy * sp))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error over the pairs where both are finite."""
    y, p = _known(y_true, y_pred)
    if len(y) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((y - p) ** 2)))


def scores(y_true, y_pred) -> dict[str, float]:
    """ccc, pearson, rmse and n (the pairs compared) of one series."""
    y, _ = _known(y_true, y_pred)
    return {
        "ccc": ccc(y_true, y_pred),
        "pearson": pearson(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "n": int(len(y)),
    }


def per_video(
    videos: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, dimensions: Sequence[str]
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Per-frame rows (video id, (N, D) truth and prediction) → (one row per video and
    dimension with its scores, the pooled scores of every frame per dimension)."""
    videos = np.asarray(videos)
    y_true = np.asarray(y_true, np.float64).reshape(len(videos), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(videos), -1)
    rows = []
    for vid in dict.fromkeys(videos.tolist()):  # first-seen order
        mine = videos == vid
        for d, name in enumerate(dimensions):
            rows.append(
                {"video_id": vid, "dimension": name, **scores(y_true[mine, d], y_pred[mine, d])}
            )
    pooled = {name: scores(y_true[:, d], y_pred[:, d]) for d, name in enumerate(dimensions)}
    return rows, pooled


def resample(
    times: np.ndarray, values: np.ndarray, frame_times: np.ndarray, max_gap: float
) -> np.ndarray:
    """(N,) increasing sample times and (N, D) values (NaN: unlabelled) → (T, D) float32 at
    `frame_times`: linear between neighbouring labelled samples at most `max_gap` seconds
    apart, NaN elsewhere; a frame within 1 µs of a sample takes that sample."""
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64).reshape(len(times), -1)
    frame_times = np.asarray(frame_times, np.float64)
    out = np.full((len(frame_times), values.shape[1]), np.nan)
    for d in range(values.shape[1]):
        known = np.isfinite(values[:, d])
        t, v = times[known], values[known, d]
        if len(t) == 0:
            continue
        right = np.searchsorted(t, frame_times - 1e-6, side="left")  # first sample ≥ frame
        right = np.clip(right, 0, len(t) - 1)
        exact = np.abs(t[right] - frame_times) <= 1e-6
        left = np.clip(right - 1, 0, len(t) - 1)
        inside = (t[left] < frame_times) & (frame_times < t[right])
        close = (t[right] - t[left]) <= max_gap + 1e-9
        span = np.where(inside, t[right] - t[left], 1.0)
        weight = np.where(inside, (frame_times - t[left]) / span, 0.0)
        between = v[left] + weight * (v[right] - v[left])
        out[:, d] = np.where(exact, v[right], np.where(inside & close, between, np.nan))
    return out.astype(np.float32)
