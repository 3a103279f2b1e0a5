import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline.common import ConfigError, DataError
from pipeline.folds import assign_folds, check_classes, check_folds, make_folds
from pipeline.splits import split


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
    with pytest.raises(ConfigError, match="s1 in folds 0, 1"):
        check_folds(folds)


def test_loso_gives_one_fold_per_subject():
    videos = random_videos(np.random.default_rng(1), 6, 3)
    folds, skipped = make_folds(videos, {"method": "loso"})
    assert skipped.empty
    assert folds.fold.nunique() == 6
    assert (folds.groupby("fold").subject.nunique() == 1).all()
    # fold i is the i-th subject in sorted order, whatever the row order
    assert folds.groupby("subject").fold.first().to_dict() == {f"s{i}": i for i in range(6)}
    again, _ = make_folds(videos.sample(frac=1, random_state=0), {"method": "loso"})
    pd.testing.assert_frame_equal(folds, again)


def write_split(tmp_path, rows, header="video_id,fold"):
    path = tmp_path / "split.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_split_file_is_read_and_unlisted_videos_are_recorded(tmp_path):
    videos = random_videos(np.random.default_rng(2), 4, 2)
    # DFEW-style fold labels 1..n, renumbered in numeric order (10 after 2)
    rows = [f"s{s}_v{v},{[1, 2, 10, 10][s]}" for s in range(4) for v in range(2)]
    rows.remove("s3_v1,10")
    folds, skipped = make_folds(
        videos, {"method": "file", "file": str(write_split(tmp_path, rows))}
    )
    assert folds.set_index("video_id").fold.to_dict()["s0_v0"] == 0
    assert folds.set_index("video_id").fold.to_dict()["s2_v0"] == 2
    assert list(skipped.video_id) == ["s3_v1"]
    assert "in no test fold of the split split.csv" in skipped.reason.iloc[0]


def test_split_file_by_path_matches_the_sheet_ids(tmp_path):
    videos = pd.DataFrame(
        {
            "video_id": ["clips__a_1", "clips__b_1"],
            "subject": ["a", "b"],
            "label": ["x", "y"],
        }
    )
    path = write_split(tmp_path, ["clips/a 1.mp4,0", "clips/b 1.mp4,1"], header="path,fold")
    folds, _ = make_folds(videos, {"method": "file", "file": str(path)})
    assert list(folds.fold) == [0, 1]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["s0_v0,0", "s0_v1,1", "s1_v0,1", "s1_v1,1"], "s0 in folds 0, 1"),
        (["s0_v0,0", "s0_v0,1", "s1_v0,1"], "listed more than once"),
        (["nope,0", "nada,1"], "none of its 2 video ids"),
        (["s0_v0,0", "s0_v1,", "s1_v0,1"], "line\\(s\\) 3"),
    ],
)
def test_bad_split_files_are_refused_with_the_reason(tmp_path, rows, message):
    videos = random_videos(np.random.default_rng(3), 2, 2)
    with pytest.raises(ConfigError, match=message):
        make_folds(videos, {"method": "file", "file": str(write_split(tmp_path, rows))})


def test_a_fold_whose_videos_all_vanished_is_refused(tmp_path):
    videos = random_videos(np.random.default_rng(4), 2, 1)
    path = write_split(tmp_path, ["s0_v0,0", "s1_v0,1", "gone_v0,2"])
    with pytest.raises(ConfigError, match="fold\\(s\\) 2 have no test videos"):
        make_folds(videos, {"method": "file", "file": str(path)})


def test_a_sheets_official_fold_column_is_a_split(tmp_path):
    """The dfew adapter's sheet: video_id per row, official_fold -1 = in no test list."""
    videos = random_videos(np.random.default_rng(5), 3, 1)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "path,subject,label,video_id,official_fold\n"
        "clips/0.mp4,s0,a,s0_v0,0\nclips/1.mp4,s1,a,,4\nclips/2.mp4,s2,b,s2_v0,-1\n"
    )
    videos.loc[1, "video_id"] = "clips__1"  # no video_id in the sheet: derived from the path
    folds, skipped = make_folds(videos, {"method": "file", "file": str(sheet)})
    assert folds.set_index("video_id").fold.to_dict() == {"s0_v0": 0, "clips__1": 1}
    assert list(skipped.video_id) == ["s2_v0"]


def test_a_split_file_finds_videos_by_absolute_path_as_by_relative_path(tmp_path):
    import pandas as pd

    from pipeline.folds import file_folds

    root = tmp_path / "set"
    videos = pd.DataFrame(
        {
            "video_id": ["p1__clip", "p2__clip", "p3__clip"],
            "path": [str((root / p / "clip.mp4").resolve()) for p in ("p1", "p2", "p3")],
            "subject": ["p1", "p2", "p3"],
            "label": ["x", "y", "x"],
        }
    )
    (tmp_path / "split.csv").write_text(
        f"path,fold\n{root / 'p1' / 'clip.mp4'},1\np2/clip.mp4,2\n{root / 'p3' / 'clip.mp4'},2\n"
    )
    folds, skipped = file_folds(videos, tmp_path / "split.csv")
    assert dict(zip(folds.video_id, folds.fold, strict=True)) == {
        "p1__clip": 0,
        "p2__clip": 1,
        "p3__clip": 1,
    }
    assert skipped.empty


def test_a_fold_trained_on_one_class_is_refused_before_training(tmp_path):
    """Subject s0 is the only one showing "b": its LOSO fold trains on "a" alone, which
    scikit-learn refused with its own traceback in the train job; the folds stage names it."""
    videos = pd.DataFrame(
        {
            "video_id": [f"v{i}" for i in range(6)],
            "subject": ["s0", "s0", "s1", "s1", "s2", "s2"],
            "label": ["a", "b", "a", "a", "a", "a"],
        }
    )
    folds, _ = make_folds(videos, {"method": "loso"})
    with pytest.raises(DataError, match=r"fold 0: its 4 training videos \(subjects s1, s2\) all "):
        check_classes(folds)
    check_classes(folds.assign(label=["a", "b"] * 3))  # every subject shows both
    clips = tmp_path / "clips.csv"
    videos.to_csv(clips, index=False)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.folds", "--clips", str(clips), "--out",
         str(tmp_path / "folds.csv"), "--params", '{"method": "loso"}'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "fold 0" in done.stderr and "cv.k" in done.stderr
    assert not (tmp_path / "folds.csv").exists()
