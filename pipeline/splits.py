"""Who trains and who tests: the outer fold split and the inner validation split, by subject.

Both splits work on tables with one row per sample (a clip, a frame or a video) and the
columns video_id, subject and label. Neither ever puts one subject on both sides: `split`
refuses to (`LeakageError`), `inner_split` holds out whole subjects only. The temporal models
(`pipeline.train`) and the per-fold backbones (`pipeline.train_backbone`) both split here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.common import PipelineError


class LeakageError(PipelineError):
    """A subject would be on the training and the test side of one fold."""


def split(table: pd.DataFrame, folds: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of `table` whose video is outside / inside test fold `fold` of `folds.csv`.

    Videos that `folds` does not list are left out (they were skipped or left out of the
    split); videos of a negative fold (in no test fold) train in every fold. Raises
    LeakageError when a subject has videos on both sides, and PipelineError when a side is
    empty.
    """
    table = table.drop(columns="fold", errors="ignore").merge(
        folds[["video_id", "fold"]], on="video_id", how="inner", validate="many_to_one"
    )
    train = table[table.fold != fold].reset_index(drop=True)
    test = table[table.fold == fold].reset_index(drop=True)
    shared = set(train.subject) & set(test.subject)
    if shared:
        raise LeakageError(
            f"fold {fold}: subjects on both the training and the test side: {sorted(shared)}; "
            "folds.csv must place every video of a subject in one fold (rebuild it with the "
            "folds rule, or fix the split file)"
        )
    if train.empty or test.empty:
        raise PipelineError(
            f"fold {fold} has {len(train)} training and {len(test)} test rows; every fold "
            "needs both (fewer folds, or a split file that lists this fold)"
        )
    return train, test


def inner_split(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the training rows held out for validation: whole subjects only.

    About `fraction` of the subjects (at least one, never all) are chosen with scikit-learn's
    StratifiedGroupKFold on the videos, so the held-out subjects cover the labels as evenly
    as subjects allow. A fraction of 0, or fewer than 3 subjects (holding one of two out would
    halve the training data), gives no validation split.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = train.subject.unique()
    if fraction <= 0 or len(subjects) < 3:
        return np.zeros(len(train), dtype=bool)
    videos = train.drop_duplicates("video_id")
    n_splits = min(len(subjects), max(2, round(1 / fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(splitter.split(videos, videos.label, groups=videos.subject))
    val_subjects = set(videos.subject.iloc[held])
    return train.subject.isin(val_subjects).to_numpy().copy()
