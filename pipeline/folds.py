"""The `folds` stage: assign every video to a cross-validation fold, grouped by subject.

Three protocols (`cv.method`):

    kfold  StratifiedGroupKFold: k folds (default 10, as EmoP3D), all videos of a subject in
           one fold, labels balanced across folds as far as the subjects allow
    loso   leave-one-subject-out: one fold per subject (fold i = i-th subject, sorted)
    file   an official split read from `cv.file` (e.g. DFEW's 5 folds): a CSV with a `fold`
           (or `official_fold`) column and `video_id` or `path` (written as in the label
           sheet); without `cv.file`, the label sheet's own `fold`/`official_fold` column
           (the dfew adapter writes one). A negative fold means "in no test fold".

Whatever the protocol, a check refuses any split with a subject on both sides of a fold, and
any fold without test or training videos; for a classifier (`--task classify`), also a fold
whose training videos all show one class (nothing to learn to tell apart), naming the fold, its
subjects and the fix, before any training. Clips inherit their video's fold, so clips of one
video never straddle folds. Every model reads the same `folds.csv`.

Outputs: `folds.csv` (video_id, subject, label, fold) and `skipped.csv` (videos the split file
does not list, left out with that reason; empty for kfold and loso).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.common import (
    ConfigError,
    DataError,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    write_csv_atomic,
)
from pipeline.datasets.findings import first_few
from pipeline.datasets.sheet import derive_id

log = logging.getLogger(__name__)

DEFAULTS = {"method": "kfold", "k": 10, "seed": 0, "file": None}
SKIP_COLUMNS = ["video_id", "stage", "reason"]


def assign_folds(videos: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Subject-grouped, label-stratified k folds of a table with one row per video."""
    from sklearn.model_selection import StratifiedGroupKFold

    videos = videos.sort_values("video_id").reset_index(drop=True)
    n_subjects = videos.subject.nunique()
    if k < 2 or k > n_subjects:
        raise ConfigError(
            f"cv.k = {k}, but the data has {n_subjects} subjects; subject-independent folds "
            f"need 2 <= k <= {n_subjects}: lower cv.k, add subjects, or use cv.method: loso"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=videos.index)
    for i, (_, test) in enumerate(splitter.split(videos, videos.label, groups=videos.subject)):
        fold.iloc[test] = i
    out = videos[["video_id", "subject", "label"]].assign(fold=fold.to_numpy())
    check_folds(out)
    return out


def loso_folds(videos: pd.DataFrame) -> pd.DataFrame:
    """One fold per subject, numbered in sorted subject order."""
    subjects = sorted(videos.subject.astype(str).unique())
    if len(subjects) < 2:
        raise ConfigError("cv.method loso needs at least 2 subjects; the data has 1")
    number = {s: i for i, s in enumerate(subjects)}
    videos = videos.sort_values("video_id").reset_index(drop=True)
    out = videos[["video_id", "subject", "label"]].assign(
        fold=videos.subject.astype(str).map(number).to_numpy()
    )
    check_folds(out)
    return out


def read_split(path: str | Path) -> pd.DataFrame:
    """video_id, fold of a split file (or a sheet with a fold column); fold labels renumbered
    0..n-1 in numeric order; rows with a negative fold (in no test fold) are dropped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cv.file: {str(path)!r} does not exist; give the split CSV's path")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    column = next((c for c in ("fold", "official_fold") if c in table), None)
    if column is None or not ({"video_id", "path"} & set(table.columns)):
        raise ConfigError(
            f"{path}: a split needs a `fold` (or `official_fold`) column and a `video_id` or "
            f"`path` column (found: {', '.join(table.columns)})"
        )
    given = table["video_id"].str.strip() if "video_id" in table else pd.Series("", table.index)
    paths = table["path"].str.strip() if "path" in table else pd.Series("", table.index)
    # per row, as the sheet does: its video_id, else the id derived from its path
    ids = [v or (derive_id(p) if p else "") for v, p in zip(given, paths, strict=True)]
    split = pd.DataFrame({"video_id": ids, "fold": table[column].str.strip(), "path": paths})
    blank = split.index[(split.video_id == "") | (split.fold == "")]
    if len(blank):
        lines = ", ".join(str(i + 2) for i in blank[:10])
        raise ConfigError(f"{path}: empty video id or {column} on line(s) {lines}")
    numeric = pd.to_numeric(split.fold, errors="coerce")
    split = split[~(numeric < 0)].reset_index(drop=True)
    twice = split[split.video_id.duplicated(keep=False)]
    if len(twice):
        listed = twice.groupby("video_id").fold.apply(lambda f: "/".join(f)).head(10)
        raise ConfigError(
            f"{path}: videos listed more than once (a video is tested in one fold): "
            + "; ".join(f"{v} in folds {f}" for v, f in listed.items())
        )
    labels = sorted(split.fold.unique(), key=_fold_order)
    split["fold"] = split.fold.map({f: i for i, f in enumerate(labels)})
    return split


def _fold_order(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def file_folds(videos: pd.DataFrame, path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Folds from a split file; the videos it does not list are returned as skipped."""
    split = read_split(path)
    videos = videos.sort_values("video_id").reset_index(drop=True)
    # an absolute path is found by the file it names (the sheet derives ids from the path
    # relative to the data root, which the split file does not know)
    by_file = dict(zip(videos.path, videos.video_id, strict=True)) if "path" in videos else {}
    for i, written in split.path.items():
        if written and by_file and Path(written).is_absolute():
            split.at[i, "video_id"] = by_file.get(str(Path(written).resolve()), split.video_id[i])
    split = split.drop(columns="path")
    table = videos[["video_id", "subject", "label"]].merge(split, on="video_id", how="left")
    missing = table[table.fold.isna()]
    unknown = sorted(set(split.video_id) - set(videos.video_id))
    if len(missing) == len(table):
        raise ConfigError(
            f"{path}: none of its {len(split)} video ids matches the data's (e.g. "
            f"{', '.join(split.video_id.head(3))} vs {', '.join(videos.video_id.head(3))}); "
            "write ids as in results/dataset/videos.csv or paths as in the label sheet"
        )
    if unknown:
        log.warning(
            "%d videos of the split file are not in the data (skipped earlier or absent), e.g. %s",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    skipped = pd.DataFrame(
        {
            "video_id": missing.video_id,
            "stage": "folds",
            "reason": f"in no test fold of the split {Path(path).name}",
        },
        columns=SKIP_COLUMNS,
    )
    out = table.dropna(subset=["fold"]).astype({"fold": int}).reset_index(drop=True)
    check_folds(out, n_folds=int(split.fold.max()) + 1, source=str(path))
    return out, skipped


def check_folds(folds: pd.DataFrame, n_folds: int | None = None, source: str = "") -> None:
    """Refuse a split with a subject on both sides of a fold, or a fold without test videos."""
    where = f"{source}: " if source else ""
    spread = folds.groupby("subject").fold.unique()
    leaking = spread[spread.map(len) > 1]
    if len(leaking):
        listed = "; ".join(
            f"{s} in folds {', '.join(map(str, sorted(f)))}" for s, f in leaking.head(10).items()
        )
        raise ConfigError(
            f"{where}{len(leaking)} subjects have videos in more than one fold, so they would be "
            f"trained and tested on ({listed}); a subject-independent split keeps each subject's "
            "videos in one fold: fix the split, or check the sheet's subject column"
        )
    if (folds.fold < 0).any():
        raise AssertionError("some videos were assigned to no fold")
    n_folds = n_folds if n_folds is not None else int(folds.fold.max()) + 1
    empty = sorted(set(range(n_folds)) - set(folds.fold))
    if empty:
        raise ConfigError(
            f"{where}fold(s) {', '.join(map(str, empty))} have no test videos left (their videos "
            "were skipped or are not in the data); every fold needs test videos"
        )
    if n_folds < 2:
        raise ConfigError(f"{where}a split needs at least 2 folds, found {n_folds}")


def check_classes(folds: pd.DataFrame, source: str = "") -> None:
    """Refuse a split in which a fold's training videos (those of every other fold, and those in
    no test fold) all show one class: a classifier cannot be trained on it."""
    where = f"{source}: " if source else ""
    problems = []
    for fold in sorted(int(f) for f in folds.fold.unique() if f >= 0):
        train = folds[folds.fold != fold]
        classes = sorted(train.label.astype(str).unique())
        if len(classes) < 2:
            shown = first_few(sorted(train.subject.astype(str).unique()))
            problems.append(
                f"fold {fold}: its {len(train)} training videos (subjects {shown}) all show "
                + (f"one class, {classes[0]!r}" if classes else "no class")
            )
    if problems:
        raise DataError(
            f"{where}a classifier needs at least 2 classes in every fold's training videos; "
            + "; ".join(problems)
            + ". Add videos of the other classes for these subjects' folds, use fewer folds "
            "(cv.k) or another split, or check the sheet's labels (docs: data.md)"
        )


def make_folds(videos: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = {**DEFAULTS, **params}
    none = pd.DataFrame(columns=SKIP_COLUMNS)
    if p["method"] == "kfold":
        return assign_folds(videos, int(p["k"]), int(p["seed"])), none
    if p["method"] == "loso":
        return loso_folds(videos), none
    if p["method"] == "file":
        if not p["file"]:
            raise ConfigError(
                "cv.method file needs cv.file: the split CSV (video_id or path, fold)"
            )
        return file_folds(videos, p["file"])
    raise ConfigError(f"cv.method {p['method']!r}: use kfold, loso or file")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Subject-independent cross-validation folds.")
    ap.add_argument("--clips", required=True, help="clips.csv (its videos are the ones kept)")
    ap.add_argument("--out", required=True, help="folds.csv")
    ap.add_argument("--skipped", help="skipped.csv: videos left out by a split file")
    ap.add_argument("--params", default="{}", help="the config's `cv` section as JSON")
    ap.add_argument("--split", help="the split file (overrides cv.file; the sheet when unset)")
    ap.add_argument(
        "--task",
        choices=("classify", "regress"),
        default="classify",
        help="classify: every fold's training videos must show 2 classes or more",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    videos = read_csv(args.clips).drop_duplicates("video_id")
    params = parse_params(args.params)
    if args.split:
        params["file"] = args.split
    folds, skipped = make_folds(videos, params)
    if args.task == "classify":
        check_classes(folds, params.get("file") or "")
    write_csv_atomic(args.out, folds)
    if args.skipped:
        write_csv_atomic(args.skipped, skipped)
    sizes = folds.groupby("fold").agg(videos=("video_id", "size"), subjects=("subject", "nunique"))
    log.info("folds:\n%s", sizes.to_string())
    if len(skipped):
        log.warning("%d videos are not in the split file and were left out", len(skipped))


if __name__ == "__main__":
    run_main(main)
