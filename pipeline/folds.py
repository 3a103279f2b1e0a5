"""The `folds` stage: assign every video to a cross-validation fold, grouped by subject.

StratifiedGroupKFold keeps all videos of a subject in one fold (so no subject is ever on both
sides of a split) while balancing labels across folds as far as the subjects allow. Clips
inherit their video's fold, so clips of one video never straddle folds.

Output `folds.csv`: video_id, subject, label, fold.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import pandas as pd

from pipeline.common import (
    ConfigError,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    write_csv_atomic,
)

log = logging.getLogger(__name__)

DEFAULTS = {"k": 5, "seed": 0}


def assign_folds(videos: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """video_id, subject, label, fold for a table with one row per video."""
    from sklearn.model_selection import StratifiedGroupKFold

    videos = videos.sort_values("video_id").reset_index(drop=True)
    n_subjects = videos.subject.nunique()
    if k < 2 or k > n_subjects:
        raise ConfigError(
            f"cv.k = {k}, but the data has {n_subjects} subjects; subject-independent folds "
            f"need 2 <= k <= {n_subjects}: lower cv.k or add subjects"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=videos.index)
    for i, (_, test) in enumerate(splitter.split(videos, videos.label, groups=videos.subject)):
        fold.iloc[test] = i
    out = videos[["video_id", "subject", "label"]].assign(fold=fold.to_numpy())
    check_no_leakage(out)
    return out


def check_no_leakage(folds: pd.DataFrame) -> None:
    """Raise if any subject has videos in more than one fold (train/test leakage)."""
    spread = folds.groupby("subject").fold.nunique()
    leaking = spread[spread > 1]
    if len(leaking):
        raise AssertionError(f"subjects in several folds: {', '.join(map(str, leaking.index))}")
    if (folds.fold < 0).any():
        raise AssertionError("some videos were assigned to no fold")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Subject-grouped, label-stratified folds.")
    ap.add_argument("--clips", required=True, help="clips.csv (its videos are the ones kept)")
    ap.add_argument("--out", required=True, help="folds.csv")
    ap.add_argument("--params", default="{}", help="the config's `cv` section as JSON")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    p = {**DEFAULTS, **parse_params(args.params)}
    videos = read_csv(args.clips).drop_duplicates("video_id")
    folds = assign_folds(videos, int(p["k"]), int(p["seed"]))
    write_csv_atomic(args.out, folds)
    sizes = folds.groupby("fold").agg(videos=("video_id", "size"), subjects=("subject", "nunique"))
    log.info("folds:\n%s", sizes.to_string())


if __name__ == "__main__":
    run_main(main)
