import numpy as np
import pandas as pd
import pytest

from pipeline.common import ConfigError
from pipeline.folds import assign_folds, check_no_leakage
from pipeline.train import split


def random_videos(rng, n_subjects, per_subject, labels=("a", "b", "c", "d")):
    rows = []
    for s in range(n_subjects):
        for v in range(per_subject):
            rows.append(
                {"video_id": f"s{s}_v{v}", "subject": f"s{s}", "label": str(rng.choice(labels))}
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_no_subject_is_on_both_sides_of_any_fold(seed, k):
    rng = np.random.default_rng(seed)
    videos = random_videos(
        rng, n_subjects=int(rng.integers(k, 12)), per_subject=int(rng.integers(1, 8))
    )
    folds = assign_folds(videos, k, seed)
    assert len(folds) == len(videos) and folds.fold.between(0, k - 1).all()
    # clip-level check, the way training splits
    clips = videos.loc[videos.index.repeat(3)].assign(start=0, stop=16)
    for fold in range(k):
        if (folds.fold == fold).any():
            train, test = split(clips, folds, fold)
            assert not set(train.subject) & set(test.subject)
            assert not set(train.video_id) & set(test.video_id)


def test_same_seed_same_folds():
    videos = random_videos(np.random.default_rng(0), 8, 4)
    pd.testing.assert_frame_equal(
        assign_folds(videos, 4, 1), assign_folds(videos.sample(frac=1, random_state=3), 4, 1)
    )


def test_more_folds_than_subjects_is_a_clear_error():
    videos = random_videos(np.random.default_rng(0), 3, 2)
    with pytest.raises(ConfigError, match="3 subjects"):
        assign_folds(videos, 5, 0)


def test_leakage_check_catches_a_split_subject():
    folds = pd.DataFrame(
        {"video_id": ["a", "b"], "subject": ["s1", "s1"], "label": ["x", "x"], "fold": [0, 1]}
    )
    with pytest.raises(AssertionError, match="s1"):
        check_no_leakage(folds)
