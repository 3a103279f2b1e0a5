import pandas as pd
import pytest

from pipeline.clips import clip_table, window
from pipeline.common import VideoError


def test_regular_windows_overlap_by_eight():
    assert window(40, 16, 8) == [(0, 16), (8, 24), (16, 32), (24, 40)]


def test_last_window_reaches_the_apex_frame():
    # 45 frames: regular starts 0, 8, 16, 24 stop at 40; one more window ends at frame 45.
    wins = window(45, 16, 8)
    assert wins[-1] == (29, 45)
    assert all(stop - start == 16 for start, stop in wins)


@pytest.mark.parametrize("n", [1, 5, 16])
def test_short_video_gives_one_clip_over_all_frames(n):
    assert window(n, 16, 8) == [(0, n)]


def test_empty_video_is_an_error():
    with pytest.raises(VideoError):
        window(0)


def test_clip_table_marks_padding_and_keeps_labels():
    videos = pd.DataFrame(
        {"video_id": ["a", "b", "c"], "subject": ["s1", "s2", "s3"], "label": ["x", "y", "z"]}
    )
    table = clip_table(videos, {"a": 10, "b": 24}, 16, 8)
    assert list(table.video_id) == ["a", "b", "b"]
    assert list(table.padded) == [1, 0, 0]
    assert set(table[table.video_id == "b"].label) == {"y"}
