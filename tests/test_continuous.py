"""Continuous labels: CCC and friends against hand-computed values, annotation files checked
and carried onto frame times."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.continuous import ccc, pearson, per_video, resample, rmse


def test_ccc_matches_a_hand_computed_value():
    y = [1.0, 2.0, 3.0, 4.0]
    p = [2.0, 2.0, 4.0, 5.0]
    # means 2.5, 3.25; population variances 1.25, 1.6875; covariance 5.5 / 4 = 1.375;
    # squared shift 0.5625: CCC = 2.75 / 3.5
    assert ccc(y, p) == pytest.approx(11 / 14)
    assert pearson(y, p) == pytest.approx(1.375 / math.sqrt(1.25 * 1.6875))
    assert rmse(y, p) == pytest.approx(math.sqrt((1 + 0 + 1 + 1) / 4))
    assert ccc(y, y) == pytest.approx(1.0) and ccc(y, y[::-1]) == pytest.approx(-1.0)
    assert ccc(y, [v + 10 for v in y]) < 0.05  # correlated but shifted: CCC punishes it


def test_ccc_edge_cases_constant_series_and_gaps():
    assert ccc([1, 2, 3], [5, 5, 5]) == 0.0  # a constant guess of a varying truth
    assert ccc([5, 5, 5], [5, 5, 5]) != ccc([5, 5, 5], [5, 5, 5])  # 0/0: undefined (NaN)
    assert ccc([2, 2, 2], [5, 5, 5]) == 0.0  # both constant, apart
    assert math.isnan(pearson([1, 2, 3], [5, 5, 5]))
    assert math.isnan(ccc([1.0], [1.0])) and math.isnan(rmse([np.nan], [1.0]))
    nan = np.nan  # gaps: only the pairs known on both sides count
    assert ccc([1, nan, 2, 3, 4], [2, 9, 2, 4, nan]) == pytest.approx(ccc([1, 2, 3], [2, 2, 4]))
    with pytest.raises(ValueError, match="different lengths"):
        ccc([1, 2], [1, 2, 3])


def test_per_video_and_pooled_scores():
    videos = ["a"] * 3 + ["b"] * 3
    y = np.array([[0.0], [1], [2], [0], [1], [2]])
    p = np.array([[0.0], [1], [2], [1], [2], [3]])
    rows, pooled = per_video(videos, y, p, ["valence"])
    assert [(r["video_id"], round(r["ccc"], 6), r["n"]) for r in rows] == [
        ("a", 1.0, 3),
        ("b", round(ccc([0, 1, 2], [1, 2, 3]), 6), 3),
    ]
    assert pooled["valence"]["n"] == 6
    assert pooled["valence"]["ccc"] == pytest.approx(ccc(y.ravel(), p.ravel()))


def test_resample_interpolates_inside_short_gaps_only():
    times = np.array([0.0, 0.5, 1.0, 3.0, 3.5])
    values = np.array([[0.0], [1.0], [np.nan], [2.0], [4.0]])  # 1.0 s: unlabelled
    frames = np.array([-0.1, 0.0, 0.25, 0.5, 0.75, 2.0, 3.0, 3.25, 3.5, 3.6])
    got = resample(times, values, frames, max_gap=0.6)[:, 0]
    want = [np.nan, 0.0, 0.5, 1.0, np.nan, np.nan, 2.0, 3.0, 4.0, np.nan]
    np.testing.assert_allclose(got, want, equal_nan=True)
    # the 0.5 → 3.0 gap is 2.5 s: filled only when max_gap allows it
    assert resample(times, values, np.array([1.75]), max_gap=3.0)[0, 0] == pytest.approx(1.5)


def test_annotation_files_list_every_problem_with_file_and_line(tmp_path):
    from pipeline.common import SheetError
    from pipeline.datasets.annotations import read_all, read_annotation

    good = tmp_path / "good.csv"
    good.write_text("time,valence,arousal\n0.0,0.1,0.2\n0.5,,0.3\n1.0,-0.2,0.1\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("time;valence\n0.0;0.1\n0.5;high\n0.4;0.2\n1.0;1.7\n")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("t,valence\n0,0\n")
    frames = tmp_path / "affwild.txt"
    frames.write_text("frame,valence,arousal\n0,0.1,0.2\n1,-5,-5\n2,0.3,0.1\n")
    annotation, problems = read_annotation(good, value_range=(-1, 1))
    assert problems == [] and annotation.unit == "seconds"
    assert annotation.dimensions == ["valence", "arousal"]
    np.testing.assert_allclose(annotation.values[:, 0], [0.1, np.nan, -0.2])
    with pytest.raises(SheetError) as err:
        read_all([good, bad, nocol, tmp_path / "gone.csv"], ["valence"], value_range=(-1, 1))
    text = str(err.value)
    assert "5 problem(s)" in text
    assert f"{bad}: line 3: valence 'high' is not a number" in text
    assert f"{bad}: line 4: time 0.4 does not increase (previous 0.5)" in text
    assert f"{bad}: line 5: valence 1.7 is outside the range [-1, 1]" in text
    assert f"{nocol}: line 1: no time column" in text
    assert f"{tmp_path / 'gone.csv'}: annotation file not found" in text
    wrong = read_annotation(good, ["dominance"])[1]
    assert wrong == [f"{good}: line 1: no column 'dominance' (columns: time, valence, arousal)"]
    affwild, problems = read_annotation(frames, missing=[-5], value_range=(-1, 1))
    assert problems == [] and affwild.unit == "frame"
    np.testing.assert_allclose(affwild.seconds(fps=10), [0.0, 0.1, 0.2])
    assert np.isnan(affwild.values[1]).all()  # -5: unlabelled, not out of range


def test_the_check_command_reports_coverage(tmp_path):
    import subprocess
    import sys

    (tmp_path / "a.csv").write_text("time,valence\n0,0.5\n1,\n2,0.1\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.datasets.annotations", str(tmp_path / "a.csv")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "3 samples, 0–2 s; labelled: valence 67 %" in done.stdout
    (tmp_path / "b.csv").write_text("time,valence\n1,0.5\n0,0.2\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.datasets.annotations", str(tmp_path / "b.csv")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "line 3: time 0 does not increase" in done.stderr
