"""The `curve` stage: accuracy against the number of training subjects."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline.common import ConfigError, read_csv
from pipeline.curve import main, subsets


def test_every_subset_when_few_and_a_seeded_sample_when_many():
    people = ["s3", "s1", "s2", "s4"]
    assert subsets(people, 2, 6, 0) == [
        ("s1", "s2"),
        ("s1", "s3"),
        ("s1", "s4"),
        ("s2", "s3"),
        ("s2", "s4"),
        ("s3", "s4"),
    ]
    assert subsets(people, 4, 6, 0) == [("s1", "s2", "s3", "s4")]
    assert subsets(people, 5, 6, 0) == []
    many = [f"p{i:02d}" for i in range(12)]
    drawn = subsets(many, 3, 5, seed=7)
    assert len(drawn) == len(set(drawn)) == 5 < math.comb(12, 3)
    assert drawn == subsets(many, 3, 5, seed=7) != subsets(many, 3, 5, seed=8)


def features(tmp_path, n_subjects=5, noise=1.0):
    """Videos of 3 classes by n_subjects people: each person's own offset on every feature
    (what more training people average out) plus the class's feature rising over time."""
    from pipeline.clips import window

    rng = np.random.default_rng(0)
    clips, folds = [], []
    with h5py.File(tmp_path / "shard-0.h5", "w") as f:
        f.attrs["backbone"] = "geometry"
        for s in range(n_subjects):
            offset = rng.normal(0, 2.0, 6)
            for take in range(2):
                for k, label in enumerate("abc"):
                    vid = f"s{s}_{label}{take}"
                    n = 24
                    data = offset + rng.normal(0, noise, (n, 6))
                    data[:, k] += np.linspace(0, 3, n)
                    f.create_dataset(vid, data=data.astype(np.float32))
                    folds.append({"video_id": vid, "subject": f"s{s}", "label": label, "fold": s})
                    for start, stop in window(n):
                        clips.append(
                            {
                                "video_id": vid,
                                "subject": f"s{s}",
                                "label": label,
                                "start": start,
                                "stop": stop,
                                "n_frames": n,
                                "padded": 0,
                            }
                        )
    pd.DataFrame(clips).to_csv(tmp_path / "clips.csv", index=False)
    pd.DataFrame(folds).to_csv(tmp_path / "folds.csv", index=False)


def run_curve(tmp_path, backbone="geometry", normalize="none"):
    main(
        [
            "--clips",
            str(tmp_path / "clips.csv"),
            "--folds",
            str(tmp_path / "folds.csv"),
            "--features",
            str(tmp_path / "shard-0.h5"),
            "--model",
            "statspool",
            "--backbone",
            backbone,
            "--params",
            json.dumps({"stats": ["mean", "std"]}),
            "--curve",
            json.dumps({"subjects": [1, 2, 4], "samples": 3, "seed": 0}),
            "--device",
            "cpu",
            "--normalize",
            normalize,
            "--out-csv",
            str(tmp_path / "c.csv"),
            "--out-json",
            str(tmp_path / "c.json"),
        ]
    )
    return read_csv(tmp_path / "c.csv"), json.loads((tmp_path / "c.json").read_text())


def test_the_curve_trains_on_subsets_of_the_training_people_and_tests_the_same_videos(tmp_path):
    features(tmp_path)
    table, result = run_curve(tmp_path)
    # 5 folds; per fold 4 training subjects: sizes 1, 2, 4 give 3, 3 (of 6) and 1 subsets
    assert sorted(
        table.groupby("n_subjects")
        .apply(lambda r: len(r[["fold", "sample"]].drop_duplicates()))
        .tolist()
    ) == [5, 15, 15]
    for (fold, _, _), rows in table.groupby(["fold", "n_subjects", "sample"]):
        trained = set(rows.train_subjects.iloc[0].split(";"))
        assert f"s{fold}" not in trained  # never the test person
        assert set(rows.subject) == {f"s{fold}"} and len(rows) == 6  # the fold's test videos
    points = {p["n_subjects"]: p for p in result["points"]}
    assert set(points) == {1, 2, 4} and result["protocol"] == "inductive"
    for p in points.values():
        assert p["war"]["low"] <= p["war"]["pooled"] <= p["war"]["high"]
    # people's own offsets: one training person generalises worse than four
    assert points[4]["war"]["pooled"] > points[1]["war"]["pooled"]
    again, _ = run_curve(tmp_path)
    pd.testing.assert_frame_equal(table, again)  # seeded: the same subsets and predictions
    _, calibrated = run_curve(tmp_path, normalize="per_subject")
    assert calibrated["protocol"] == "transductive"


def test_no_curve_on_a_backbone_trained_per_fold(tmp_path):
    features(tmp_path)
    with pytest.raises(ConfigError, match="trained per fold"):
        run_curve(tmp_path, backbone="geometry+fer-finetuned")
