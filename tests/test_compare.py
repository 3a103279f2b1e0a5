"""Paired comparison over folds, per-subject normalisation, and the report's own parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.compare import all_pairs, caveat, compare, min_attainable_p, oriented, wilcoxon_p


def result(model, wars, protocol="inductive", backbone="hog", n=10):
    folds = [{"fold": k, "war": w, "uar": w, "n": n} for k, w in enumerate(wars)]
    return {
        "model": model,
        "backbone": backbone,
        "protocol": protocol,
        "n_folds": len(wars),
        "n_videos": n * len(wars),
        "video": {"folds": folds},
    }


def test_a_stored_pair_read_either_way_equals_comparing_that_way(tmp_path):
    """The report reads comparison.csv rows, turned around when stored as (b, a)."""
    from pipeline.common import read_csv, write_csv_atomic

    a = result("gru", [0.5, 0.7, 0.6, 0.9, 0.4])
    b = result("meanpool", [0.5, 0.6, 0.7, 0.6, 0.2])
    write_csv_atomic(tmp_path / "comparison.csv", all_pairs([b, a]))  # stored as (meanpool, gru)
    pairs = read_csv(tmp_path / "comparison.csv")
    for first, second in ((a, b), (b, a)):
        row, direct = oriented(pairs, first, second, "uar"), compare(first, second, "uar")
        assert set(row) == set(direct)
        for key, value in direct.items():
            expected = pytest.approx(value, nan_ok=True) if isinstance(value, float) else value
            assert row[key] == expected, key
    assert oriented(pairs, a, result("c3d", [0.1] * 5)) is None


def test_wilcoxon_matches_the_exact_distribution():
    # 6 positive differences of distinct size: the exact two-sided p is 2 / 2^6
    assert wilcoxon_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])) == pytest.approx(2 / 64)
    assert wilcoxon_p(np.zeros(5)) == 1.0
    # symmetric differences: no evidence either way
    assert wilcoxon_p(np.array([0.1, -0.1, 0.2, -0.2])) == pytest.approx(1.0)
    assert min_attainable_p(5) == pytest.approx(0.0625) and min_attainable_p(10) < 0.002


def test_paired_comparison_counts_folds_and_differences():
    a = result("gru", [0.5, 0.7, 0.6, 0.9, 0.4])
    b = result("meanpool", [0.5, 0.6, 0.7, 0.6, 0.2])
    c = compare(a, b)
    assert (c["better"], c["equal"], c["worse"]) == (3, 1, 1)
    assert c["mean_diff"] == pytest.approx(np.mean([0, 0.1, -0.1, 0.3, 0.2]))
    assert c["min_p"] == pytest.approx(2 / 16)  # 4 non-zero differences
    assert 0 < c["wilcoxon_p"] <= 1


def test_results_of_different_protocols_or_folds_are_never_paired():
    inductive = result("gru", [0.5, 0.6, 0.7])
    transductive = result("gru", [0.8, 0.9, 0.9], protocol="transductive")
    other_folds = result("c3d", [0.5, 0.6, 0.7], n=11)
    same = result("meanpool", [0.4, 0.5, 0.6])
    pairs = all_pairs([inductive, transductive, other_folds, same])
    assert set(zip(pairs.model_a, pairs.model_b, strict=True)) == {("gru", "meanpool")}
    assert set(pairs.metric) == {"war", "uar"}


def test_the_caveat_says_when_no_p_can_be_small():
    assert "no difference can reach p < 0.05" in caveat(5)
    assert "no difference can reach" not in caveat(10)
    assert "not independent" in caveat(10)


def test_per_subject_normalisation_uses_each_subjects_own_frames(tmp_path):
    import h5py

    from pipeline.store import ClipReader, open_reader

    rng = np.random.default_rng(0)
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as f:
        # subject a: offset +5, scale 2; subject b: offset -3, scale 0.5; one constant feature
        for vid, (offset, scale, n) in {
            "a1": (5, 2, 20),
            "a2": (5, 2, 30),
            "b1": (-3, 0.5, 25),
        }.items():
            x = offset + scale * rng.standard_normal((n, 4)).astype(np.float32)
            x[:, 3] = 7.0
            f[vid] = x.astype(np.float16)
    subjects = {"a1": "a", "a2": "a", "b1": "b"}
    reader = open_reader([path], "per_subject", subjects)
    plain = ClipReader([path])
    a = np.concatenate([reader.video("a1"), reader.video("a2")])
    np.testing.assert_allclose(a[:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(a[:, :3].std(0), 1, atol=1e-3)
    np.testing.assert_allclose(reader.video("b1")[:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(a[:, 3], 0.0)  # constant within the subject: centred only
    # the statistics of a do not depend on b's frames
    alone = open_reader([path], "per_subject", {"a1": "a", "a2": "a"})
    np.testing.assert_allclose(alone.video("a1"), reader.video("a1"))
    # clips come out normalised, with the plain reader's shape
    table = pd.DataFrame({"video_id": ["a1", "b1"], "start": [0, 0], "stop": [16, 16]})
    assert reader.clips(table, 16).shape == plain.clips(table, 16).shape == (2, 16, 4)


def test_benchmarks_are_summed_per_stage(tmp_path):
    from pipeline.qc import runtime_table
    from pipeline.report.quality import runtime_section

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, (sec, rss) in {
        "train/gru/hog/fold0.tsv": (10.0, 800.0),
        "train/gru/hog/fold1.tsv": (12.5, 900.0),
        "demo_data.tsv": (60.0, 300.0),
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{sec}\t0:00:10\t{rss}\t1\t1\t1\t0\t0\t50\t{sec / 2}\n")
    (tmp_path / "broken.tsv").write_text("not\ta\nbenchmark")
    files = sorted(map(str, tmp_path.rglob("*.tsv")))
    table = runtime_table(files, tmp_path)
    assert list(table.stage) == ["demo_data", "train"] and list(table.jobs) == [1, 2]
    assert table.wall_s.iloc[1] == 22.5 and table.peak_rss_mb.iloc[1] == 900
    html = runtime_section(table)
    assert html.index("demo_data") < html.index("train")
    assert '<td class="l">train</td><td class="">2</td><td class="">22.5</td>' in html
    assert ">900<" in html


def with_videos(model, right, n_subjects=4, per_subject=10):
    """A result whose test videos (per subject, label "a") are right where `right` says."""
    rows, folds = [], []
    for s in range(n_subjects):
        hits = 0
        for v in range(per_subject):
            ok = right(s, v)
            hits += ok
            rows.append(
                {
                    "video_id": f"s{s}v{v}",
                    "subject": f"s{s}",
                    "fold": s,
                    "label": "a",
                    "pred": "a" if ok else "b",
                }
            )
        folds.append(
            {"fold": s, "war": hits / per_subject, "uar": hits / per_subject, "n": per_subject}
        )
    return {
        "model": model,
        "backbone": "hog",
        "protocol": "inductive",
        "n_folds": n_subjects,
        "n_videos": n_subjects * per_subject,
        "classes": ["a", "b"],
        "video": {"folds": folds},
        "predictions": rows,
    }


def test_pairs_are_also_compared_video_by_video_and_read_back_either_way(tmp_path):
    from scipy.stats import binomtest

    from pipeline.common import read_csv, write_csv_atomic

    better = with_videos("gru", lambda s, v: v < 7)  # 7 of 10 right for everyone
    worse = with_videos("meanpool", lambda s, v: v < 4 or v == 9)  # 5 of 10
    pairs = all_pairs([worse, better])
    row = pairs[pairs.metric == "war"].iloc[0]
    assert (row.only_a, row.only_b, row.paired_videos) == (4, 12, 40)  # meanpool only: v9
    assert row.pooled_diff == pytest.approx(-0.2)
    assert row.diff_low < row.pooled_diff < 0 and row.diff_high <= 0
    assert row.mcnemar_p == pytest.approx(binomtest(4, 16, 0.5).pvalue)
    write_csv_atomic(tmp_path / "comparison.csv", pairs)
    stored = read_csv(tmp_path / "comparison.csv")
    turned = oriented(stored, better, worse)
    assert (turned["only_a"], turned["only_b"]) == (12, 4)
    assert turned["pooled_diff"] == pytest.approx(0.2)
    assert 0 <= turned["diff_low"] < 0.2 < turned["diff_high"]
    # results without test-video lists (older metrics files) are compared over folds only
    plain = result("c3d", [0.5, 0.6, 0.7, 0.6])
    plain["n_videos"] = 40
    assert np.isnan(compare(plain, better, videos=None)["mcnemar_p"])
