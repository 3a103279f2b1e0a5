"""Per-frame tables: `python -m pipeline.export` and the `export_frames` rule."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from dagtools import snakemake


def test_per_frame_is_the_mean_of_the_windows_covering_each_frame():
    from pipeline.export import per_frame

    clips = pd.DataFrame(
        {"start": [0, 2], "stop": [4, 9], "p_a": [0.2, 0.6], "p_b": [0.8, 0.4]}
    )  # the second window is padded past the video's 7 frames
    probs, classes = per_frame(clips, 8)
    assert classes == ["a", "b"]
    np.testing.assert_allclose(probs[:2], [[0.2, 0.8]] * 2)
    np.testing.assert_allclose(probs[2:4], [[0.4, 0.6]] * 2)
    np.testing.assert_allclose(probs[4:], [[0.6, 0.4]] * 4)
    probs, _ = per_frame(clips.iloc[:1], 6)
    assert np.isnan(probs[4:]).all() and not np.isnan(probs[:4]).any()


def faces_group(f: h5py.File, vid: str, n: int, face: np.ndarray) -> None:
    g = f.create_group(vid)
    g.create_dataset("time", data=np.arange(n) / 25.0)
    g.create_dataset("valid", data=face)
    g.create_dataset("detected", data=np.ones(n, bool))
    g.create_dataset("filled", data=np.zeros(n, bool))
    g.create_dataset("n_faces", data=face.astype(np.uint8))
    g.create_dataset("track", data=np.where(face, 0, -1).astype(np.int32))
    g.create_dataset("boxes", data=np.where(face[:, None], [[1, 2, 30, 40]], np.nan).astype("f4"))
    g.create_dataset("scores", data=face * np.float32(0.9))
    g.create_dataset("landmarks", data=np.full((n, 5, 2), 7, np.float32))


def test_export_names_skips_and_takes_backbone_probabilities(tmp_path):
    from pipeline.export import export, load

    n = 6
    face = np.array([1, 1, 0, 1, 1, 1], bool)
    with h5py.File(tmp_path / "faces.h5", "w") as f:
        faces_group(f, "v1", n, face)
        f.attrs["skipped"] = json.dumps({"v2": "no face in any frame"})
    with h5py.File(tmp_path / "aligned.h5", "w") as f:
        g = f.create_group("v1")
        for name in ("yaw", "pitch", "roll", "visible", "quality"):
            g.create_dataset(name, data=np.full(n, 0.5, np.float32))
        f.attrs["skipped"] = "{}"
    shards = tmp_path / "features" / "fer" / "shard-0.h5"
    shards.parent.mkdir(parents=True)
    with h5py.File(shards, "w") as f:
        f.attrs["backbone"], f.attrs["kind"] = "fer", "vectors"
        f.attrs["describe"] = json.dumps({"columns": ["pool0", "p_happy", "p_sad"]})
        f.create_dataset("v1", data=np.tile([[5.0, 0.75, 0.25]], (n, 1)).astype(np.float16))
    with h5py.File(tmp_path / "features" / "hog.h5", "w") as f:  # no probabilities: left out
        f.attrs["backbone"], f.attrs["kind"] = "hog", "vectors"
        f.attrs["describe"] = json.dumps({"dim": 2})
        f.create_dataset("v1", data=np.zeros((n, 2), np.float16))
    with h5py.File(tmp_path / "features" / "bs.h5", "w") as f:  # per-frame columns it exports
        f.attrs["backbone"], f.attrs["kind"] = "blendshapes", "vectors"
        columns = ["jawOpen", "mouthSmileLeft", "found"]
        f.attrs["describe"] = json.dumps({"columns": columns, "export": columns})
        smile = np.linspace(0, 1, n)
        f.create_dataset("v1", data=np.stack([smile / 2, smile, np.ones(n)], 1).astype(np.float16))
    videos = tmp_path / "videos.csv"
    pd.DataFrame(
        {"video_id": ["v1", "v2", "v3"], "subject": ["s1", "s2", "s2"], "label": ["a", "b", "a"]}
    ).to_csv(videos, index=False)
    out = tmp_path / "frames"
    index = export(
        [str(tmp_path / "faces.h5")],
        [str(tmp_path / "aligned.h5")],
        str(videos),
        None,
        [str(shards), str(tmp_path / "features" / "hog.h5"), str(tmp_path / "features" / "bs.h5")],
        [],
        str(out),
    )
    assert index.status.tolist() == ["done", "skipped", "skipped"]
    assert index.reason.tolist()[1:] == [
        "no face in any frame",
        "no face data (the face stage did not write this video)",
    ]
    table = pd.read_csv(out / "v1.csv")
    assert table.columns[:15].tolist() == [
        "video_id", "frame", "time_s", "face", "detected", "filled", "n_faces", "track",
        "person", "other_persons", "x1", "y1", "x2", "y2", "confidence",
    ]  # fmt: skip
    assert table.person.isna().all()  # no identities in this run
    assert [c for c in table.columns if ":" in c] == [
        "blendshapes:jawOpen", "blendshapes:mouthSmileLeft", "blendshapes:found",
        "fer:p_happy", "fer:p_sad",
    ]  # fmt: skip
    smile = table["blendshapes:mouthSmileLeft"]
    assert smile[face].tolist() == pytest.approx(np.linspace(0, 1, n)[face], abs=1e-3)
    assert smile[~face].isna().all()
    assert {f"x_{k}" for k in range(5)} | {"y_4", "yaw", "quality"} <= set(table.columns)
    assert table["fer:p_happy"].isna().tolist() == (~face).tolist()
    assert table.loc[0, "fer:p_happy"] == 0.75 and np.isnan(table.loc[2, "x_0"])
    assert table.time_s.tolist() == pytest.approx(np.arange(n) / 25.0)
    everything = load(out)
    assert len(everything) == n and set(everything.subject) == {"s1"}


@pytest.fixture(scope="module")
def exported(run):
    workdir, root = run
    done = snakemake(workdir, root, "--cores", "2", "results/frames")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir / "results"


def test_the_rule_exports_every_video_with_its_test_folds_predictions(exported):
    from pipeline.export import load

    videos = pd.read_csv(exported / "dataset" / "videos.csv")
    folds = pd.read_csv(exported / "folds.csv").set_index("video_id").fold
    index = pd.read_csv(exported / "frames" / "index.csv")
    assert index.video_id.tolist() == videos.video_id.tolist()
    done = index[index.status == "done"]
    assert len(done) >= len(index) - 1 and (done.n_frames > 0).all()
    vid = done.video_id.iloc[0]
    table = pd.read_csv(exported / "frames" / done.file.iloc[0])
    assert len(table) == done.n_frames.iloc[0] and table.frame.tolist() == list(range(len(table)))
    assert {f"x_{k}" for k in range(68)} | {f"y_{k}" for k in range(68)} <= set(table.columns)
    assert {"yaw", "pitch", "roll", "visible", "quality", "track", "confidence"} <= set(
        table.columns
    )
    # the gru/hog columns: the mean of the windows of the fold that tested this video
    fold = folds[vid]
    clips = pd.read_csv(exported / "models" / "gru" / "hog" / f"fold{fold}" / "predictions.csv")
    mine = clips[clips.video_id == vid]
    assert len(mine) and (mine.fold == fold).all()
    first = mine.iloc[0]
    covering = mine[(mine.start <= first.start) & (mine.stop > first.start)]
    classes = [c for c in mine.columns if c.startswith("p_")]
    expected = covering[classes].mean().to_numpy()
    got = table.loc[int(first.start), [f"gru:hog:{c}" for c in classes]].to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert table.loc[int(first.start), "gru:hog:pred"] == classes[int(expected.argmax())][2:]
    for other in sorted({0, 1} - {fold}):  # no other fold's model predicted this video
        theirs = pd.read_csv(
            exported / "models" / "gru" / "hog" / f"fold{other}" / "predictions.csv"
        )
        assert vid not in set(theirs.video_id)
    everything = load(exported / "frames")
    assert len(everything) == done.n_frames.sum()
    assert everything.groupby("video_id").fold.first().to_dict() == {
        v: folds[v] for v in done.video_id
    }
