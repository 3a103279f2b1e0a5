"""Paired comparison of models evaluated on the same folds.

For two results (model × backbone) of the same protocol over the same folds, the per-fold
differences of a score (video level) give the mean difference, the folds better / equal /
worse, and a two-sided Wilcoxon signed-rank test (scipy; exact where there are no ties or zero
differences). Two caveats travel with every p-value:

- with n folds the smallest attainable two-sided p is 2 / 2^n (0.0625 for 5 folds), so fewer
  than 6 folds can never reach 0.05;
- folds share training subjects, so fold scores are not independent and the test is
  optimistic (Nadeau & Bengio, 2003): read p as descriptive, not as a significance claim.

Folds are few, videos are many: for classification results the same pair is also compared
video by video on the test videos both predicted (`pipeline.intervals.paired`): the
difference of the pooled score with its 95 % interval (a hierarchical bootstrap over test
subjects and their videos, the same resamples for both) and the exact McNemar test of which
videos each gets right (`only_a`, `only_b`, `mcnemar_p`). That is the test to read.

The `compare` rule writes every comparable pair (a listed before b in the rule's order) to
`results/comparison.csv`: `python -m pipeline.compare --metrics M.json.. --out F.csv`.
The report reads its rows (`oriented` turns a pair around).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.common import run_main, setup_logging, write_csv_atomic
from pipeline.intervals import paired

log = logging.getLogger(__name__)

COLUMNS = [
    "protocol",
    "model_a",
    "backbone_a",
    "model_b",
    "backbone_b",
    "metric",
    "folds",
    "mean_a",
    "mean_b",
    "mean_diff",
    "better",
    "equal",
    "worse",
    "wilcoxon_p",
    "min_p",
    "paired_videos",
    "pooled_diff",
    "diff_low",
    "diff_high",
    "only_a",
    "only_b",
    "mcnemar_p",
]
PAIRED = COLUMNS[COLUMNS.index("paired_videos") :]
EPS = 1e-12


def min_attainable_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon p-value with n non-zero paired differences."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences; 1.0 when all are zero."""
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=float)
    if len(diff) == 0 or np.all(np.abs(diff) < EPS):
        return 1.0
    diff = np.where(np.abs(diff) < EPS, 0.0, diff)
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def per_fold(m: dict, metric: str, level: str = "video") -> dict[int, float]:
    """fold → score (folds where it is undefined, e.g. a constant CCC, are left out)."""
    return {f["fold"]: f[metric] for f in m[level]["folds"] if f[metric] is not None}


def video_pairs(a: dict, b: dict) -> dict | None:
    """`pipeline.intervals.paired` of two classification results' test-video predictions
    (None without them, or when they predicted different videos)."""
    if not a.get("predictions") or not b.get("predictions") or a["classes"] != b["classes"]:
        return None
    return paired(pd.DataFrame(a["predictions"]), pd.DataFrame(b["predictions"]), a["classes"])


def compare(
    a: dict, b: dict, metric: str = "war", level: str = "video", videos: dict | None = None
) -> dict:
    """Paired comparison of result `a` against `b` over their common folds, and video by
    video when `videos` (their `video_pairs`) is given."""
    ours, theirs = per_fold(a, metric, level), per_fold(b, metric, level)
    common = sorted(set(ours) & set(theirs))
    diff = np.array([ours[k] - theirs[k] for k in common])
    by_video = dict.fromkeys(PAIRED, math.nan)
    if videos is not None and f"{metric}_diff" in videos:
        by_video.update(
            paired_videos=videos["videos"],
            pooled_diff=videos[f"{metric}_diff"],
            diff_low=videos[f"{metric}_diff_low"],
            diff_high=videos[f"{metric}_diff_high"],
            only_a=videos["only_a"],
            only_b=videos["only_b"],
            mcnemar_p=videos["mcnemar_p"],
        )
    return {
        "protocol": a.get("protocol", "inductive"),
        "model_a": a["model"],
        "backbone_a": a["backbone"],
        "model_b": b["model"],
        "backbone_b": b["backbone"],
        "metric": metric,
        "folds": len(common),
        "mean_a": float(np.mean([ours[k] for k in common])) if common else math.nan,
        "mean_b": float(np.mean([theirs[k] for k in common])) if common else math.nan,
        "mean_diff": float(diff.mean()) if len(diff) else math.nan,
        "better": int((diff > EPS).sum()),
        "equal": int((np.abs(diff) <= EPS).sum()),
        "worse": int((diff < -EPS).sum()),
        "wilcoxon_p": wilcoxon_p(diff),
        "min_p": min_attainable_p(int((np.abs(diff) > EPS).sum())),
        **by_video,
    }


def same_folds(a: dict, b: dict) -> bool:
    """Comparable: same protocol, same fold ids and the same test videos per fold."""
    if a.get("protocol", "inductive") != b.get("protocol", "inductive"):
        return False
    if a.get("n_videos") != b.get("n_videos") or a.get("n_folds") != b.get("n_folds"):
        return False
    sizes = {f["fold"]: f["n"] for f in a["video"]["folds"]}
    return sizes == {f["fold"]: f["n"] for f in b["video"]["folds"]}


def all_pairs(
    metrics: list[dict], keys: tuple[str, ...] = ("war", "uar"), level: str = "video"
) -> pd.DataFrame:
    """Every pair of comparable results (a listed before b), for each metric."""
    rows = []
    for a, b in itertools.combinations(metrics, 2):
        if same_folds(a, b):
            videos = video_pairs(a, b)
            rows += [compare(a, b, key, level, videos) for key in keys]
    return pd.DataFrame(rows, columns=COLUMNS)


def regress_keys(metrics: list[dict]) -> tuple[str, ...]:
    """A regress run's per-fold keys to compare: the frame-level CCC of each dimension."""
    return tuple(f"ccc_{d}" for d in metrics[0]["dimensions"])


def caveat(n_folds: int) -> str:
    """The sentence printed next to any p-value."""
    text = (
        f"With {n_folds} folds the smallest attainable two-sided p is "
        f"{min_attainable_p(n_folds):.3g}"
    )
    if min_attainable_p(n_folds) > 0.05:
        text += ", so no difference can reach p < 0.05 however large it is"
    return (
        text + ". Folds share training subjects, so their scores are not independent and the "
        "test is optimistic (Nadeau & Bengio, 2003): read p as descriptive."
    )


def oriented(pairs: pd.DataFrame, a: dict, b: dict, metric: str = "war") -> dict | None:
    """The row of `pairs` comparing result a with b (turned around if stored as b, a)."""
    key = (a["model"], a["backbone"], b["model"], b["backbone"])
    same = pairs.metric == metric
    for (ma, ba, mb, bb), flip in ((key, False), ((key[2], key[3], key[0], key[1]), True)):
        hit = pairs[same & (pairs.model_a == ma) & (pairs.backbone_a == ba)]
        hit = hit[(hit.model_b == mb) & (hit.backbone_b == bb)]
        if len(hit):
            row = hit.iloc[0].to_dict()
            for name in PAIRED:  # empty cells of a CSV read back: no video-level comparison
                if row[name] == "":
                    row[name] = math.nan
            if flip:
                row.update(model_a=key[0], backbone_a=key[1], model_b=key[2], backbone_b=key[3])
                row["mean_diff"] = -row["mean_diff"]
                row["better"], row["worse"] = row["worse"], row["better"]
                row["mean_a"], row["mean_b"] = row["mean_b"], row["mean_a"]
                row["pooled_diff"] = -row["pooled_diff"]
                row["diff_low"], row["diff_high"] = -row["diff_high"], -row["diff_low"]
                row["only_a"], row["only_b"] = row["only_b"], row["only_a"]
            return row
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Paired comparison of every pair of results.")
    ap.add_argument("--metrics", nargs="+", required=True, help="metrics/*.json")
    ap.add_argument("--out", required=True, help="comparison.csv")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    metrics = []
    for path in args.metrics:
        with open(path, encoding="utf-8") as f:
            metrics.append(json.load(f))
    if metrics and metrics[0].get("task") == "regress":  # frame-level CCC per dimension
        pairs = all_pairs(metrics, regress_keys(metrics), level="frame")
    else:
        pairs = all_pairs(metrics)
    write_csv_atomic(args.out, pairs)
    log.info("%d comparisons of %d results", len(pairs), len(metrics))


if __name__ == "__main__":
    run_main(main)
