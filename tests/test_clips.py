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


def test_average_windows_takes_window_or_frame_values_and_leaves_gaps():
    import numpy as np

    from pipeline.clips import average_windows

    whole = average_windows([[1.0], [3.0]], [(0, 4), (2, 6)], 8)  # one value per window
    np.testing.assert_allclose(whole[:, 0], [1, 1, 2, 2, 3, 3, np.nan, np.nan])
    frames = np.array([[[0.0], [1], [2], [9]], [[10.0], [20], [30], [40]]])  # (W, L, K)
    per = average_windows(frames, [(0, 3), (1, 5)], 4)  # window 0 is short: row 3 is padding
    np.testing.assert_allclose(per[:, 0], [0, 5.5, 11, 30])
