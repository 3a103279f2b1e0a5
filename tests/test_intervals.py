"""95 % intervals (hierarchical bootstrap) and paired video-level tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from pipeline.intervals import cells, interval, mcnemar_p, paired, resamples

CLASSES = ["a", "b", "c"]


def table(n_subjects=5, per_subject=12, accuracy=0.5, seed=0, clips=1):
    """Videos of n_subjects people, every class equally often, right with `accuracy`."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for v in range(per_subject):
            label = CLASSES[v % 3]
            pred = label if rng.random() < accuracy else CLASSES[(v + 1) % 3]
            rows += [(f"s{s}", f"s{s}-v{v}", label, pred)] * clips
    return pd.DataFrame(rows, columns=["subject", "video_id", "label", "pred"])


def test_the_interval_holds_the_pooled_score_and_narrows_with_more_people():
    small, large = table(5, 12), table(40, 12)
    for t in (small, large):
        ci = interval(t, CLASSES)
        war = (t.pred == t.label).mean()
        assert ci["war"]["pooled"] == pytest.approx(war)
        assert ci["war"]["low"] < war < ci["war"]["high"]
        assert ci["uar"]["low"] <= ci["uar"]["pooled"] <= ci["uar"]["high"]
    width = {n: interval(t, CLASSES)["war"] for n, t in ((5, small), (40, large))}
    assert width[40]["high"] - width[40]["low"] < 0.6 * (width[5]["high"] - width[5]["low"])


def test_many_people_with_one_video_each_give_the_binomial_interval():
    """One video per subject: resampling subjects is resampling videos, and 400 Bernoulli(0.6)
    videos have a 95 % interval of about ±1.96·sqrt(0.24/400) = ±4.8 points."""
    t = table(400, 1, accuracy=0.6, seed=3)
    t["label"], t["pred"] = "a", np.where(np.random.default_rng(3).random(400) < 0.6, "a", "b")
    ci = interval(t, CLASSES)["war"]
    half = 1.96 * np.sqrt(ci["pooled"] * (1 - ci["pooled"]) / 400)
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(half, rel=0.15)


def test_people_who_differ_widen_the_interval_beyond_the_binomial_one():
    """Two people all right, two all wrong: 50 % overall, but which people are drawn decides
    everything, and the interval must say so (a video-level bootstrap would give ±9 points)."""
    rows = [(f"s{s}", f"s{s}-{v}", "a", "a" if s < 2 else "b") for s in range(4) for v in range(30)]
    t = pd.DataFrame(rows, columns=["subject", "video_id", "label", "pred"])
    ci = interval(t, CLASSES)["war"]
    assert ci["pooled"] == 0.5
    assert ci["low"] <= 0.25 and ci["high"] >= 0.75


def test_perfect_predictions_have_a_point_interval():
    t = table(accuracy=1.0)
    ci = interval(t, CLASSES)
    assert ci["war"] == {"pooled": 1.0, "low": 1.0, "high": 1.0}


def test_clips_come_with_their_video():
    """Every clip of a video is drawn with it: the weights of one video's clips are equal."""
    t = table(4, 6, clips=3)
    videos, counts = cells(t, CLASSES)
    assert len(videos) == 24 and counts.sum() == len(t)
    for weights in resamples(videos.subject, n=300):
        assert weights.shape == (min(250, weights.shape[0]), 24)
        # each resample draws as many videos as there are
        assert np.allclose(weights.sum(1), 24)
    ci_clips, ci_videos = interval(t, CLASSES), interval(t.drop_duplicates("video_id"), CLASSES)
    assert ci_clips["war"] == pytest.approx(ci_videos["war"])


def test_same_predictions_same_bytes():
    t = table(seed=5)
    assert interval(t, CLASSES) == interval(t.sample(frac=1, random_state=1), CLASSES)


def test_paired_comparison_of_a_model_with_itself_finds_nothing():
    t = table(seed=1)
    c = paired(t, t, CLASSES)
    assert c["war_diff"] == 0 and c["war_diff_low"] == 0 and c["war_diff_high"] == 0
    assert (c["only_a"], c["only_b"], c["mcnemar_p"]) == (0, 0, 1.0)


def test_paired_comparison_counts_discordant_videos_and_their_exact_p():
    a = table(seed=2, accuracy=0.5)
    b = a.copy()
    wrong = a[a.pred != a.label].groupby("subject").head(3).index  # b: 3 more right a person
    b.loc[wrong, "pred"] = b.loc[wrong, "label"]
    right = a.index[a.pred == a.label][:2]  # and 2 fewer
    b.loc[right, "pred"] = [CLASSES[(CLASSES.index(x) + 1) % 3] for x in b.loc[right, "label"]]
    c = paired(b, a, CLASSES)
    only_b = int(((b.pred == b.label) & (a.pred != a.label)).sum())
    only_a = int(((a.pred == a.label) & (b.pred != b.label)).sum())
    assert (c["only_a"], c["only_b"]) == (only_b, only_a)
    assert c["mcnemar_p"] == pytest.approx(binomtest(only_b, only_a + only_b, 0.5).pvalue)
    assert c["war_diff"] == pytest.approx((b.pred == b.label).mean() - (a.pred == a.label).mean())
    assert (only_b, only_a) == (15, 2)
    assert c["war_diff_low"] > 0  # better for every person: the interval leaves out 0
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(6, 0) == pytest.approx(2 / 64)


def test_paired_refuses_different_videos():
    a = table()
    assert paired(a, a.iloc[1:], CLASSES) is None
    relabelled = a.copy()
    relabelled.loc[0, "label"] = "c" if a.loc[0, "label"] != "c" else "a"
    assert paired(a, relabelled, CLASSES) is None
