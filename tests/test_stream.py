"""`python -m pipeline.predict.stream`: a video piped on stdin at its real frame rate."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.encode import write_video

ROOT = Path(__file__).resolve().parents[1]


def test_the_handoff_drops_the_oldest_frames_and_counts_them():
    from pipeline.predict.stream import Dropping

    handoff = Dropping(2)
    handoff.put("before ready")  # arrived while the networks loaded: never dropped
    handoff.go_live()
    for item in range(5):
        handoff.put(item)
    handoff.close()
    assert handoff.dropped == 3
    assert [handoff.get() for _ in range(4)] == ["before ready", 3, 4, None]
    for waiting, keep in ((Dropping(1, wait=True), False), (Dropping(1), True)):
        # a file given by path, or frames arriving faster than real time (a file piped): the
        # reader waits for room, nothing is dropped
        waiting.go_live()
        reader = threading.Thread(
            target=lambda w=waiting, k=keep: [w.put(i, keep=k) for i in range(3)] + [w.close()]
        )
        reader.start()
        got = [waiting.get() for _ in range(4)]
        reader.join(timeout=10)
        assert got == [0, 1, 2, None] and waiting.dropped == 0


def every_frame_model(gru_fold: Path, out: Path) -> Path:
    """An untrained cnn_lstm_partial with a trained gru fold's preprocessing and shapes."""
    import torch

    from pipeline.models import build_model, load_checkpoint

    _, meta = load_checkpoint(gru_fold / "model.pt", "cpu")
    model = build_model("cnn_lstm_partial", len(meta["classes"]), tuple(meta["input_shape"]), {})
    meta = {**meta, "model": "cnn_lstm_partial", "params": {}}
    out.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, out / "model.pt")
    return out


def stream(model: Path, video: Path, workdir: Path) -> tuple[pd.DataFrame, str]:
    """Run the stream on `video`, fed once the networks are warm, at its real frame rate."""
    from pipeline.predict.stream import feed

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.predict.stream",
            "-",
            "--model",
            str(model),
            "--threads",
            "1",
            "--device",
            "cpu",
        ],  # fmt: skip
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
    )
    header = proc.stdout.readline().decode()
    assert header.startswith("frame,time_s,face,"), proc.stderr.read().decode()[-3000:]

    def send():
        try:
            feed(str(video), proc.stdin)
        finally:
            proc.stdin.close()

    feeder = threading.Thread(target=send)
    feeder.start()
    lines = proc.stdout.read().decode()
    feeder.join()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err[-3000:]
    import io

    return pd.read_csv(io.StringIO(header + lines)), err


@pytest.mark.parametrize(
    "which", ["gru/resnet-attention", "cnn_lstm_partial", "statspool/blendshapes+geometry"]
)
def test_a_piped_video_is_predicted_frame_by_frame(run, tmp_path, which):
    import av

    workdir, _ = run
    video = workdir / "data" / "demo" / "videos" / "s01_anger_1.mp4"
    with av.open(str(video)) as c:
        n = sum(1 for _ in c.decode(c.streams.video[0]))
    if which == "cnn_lstm_partial":
        model = every_frame_model(workdir / "results/models/gru/hog/fold0", tmp_path / "partial")
    else:
        model = workdir / "results" / "models" / which  # both folds: an ensemble
    table, err = stream(model, video, workdir)
    assert f'"frames": {n}' in err
    dropped = int(table.dropped.iloc[-1])
    # every frame is either predicted or counted as dropped; how many are dropped depends on
    # the machine's speed (bench/stream.py measures it), so it is not asserted here
    assert len(table) + dropped == n and table.frame.is_monotonic_increasing
    assert (table.dropped.diff().fillna(0) >= 0).all()
    assert (table.frame.diff().fillna(1) - 1 == table.dropped.diff().fillna(0)).all()
    assert table.face.mean() > 0.9 and (table.latency_ms >= 0).all()
    classes = [c for c in table.columns if c.startswith("p_")]
    with_pred = table.pred.notna()
    np.testing.assert_allclose(table.loc[with_pred, classes].sum(axis=1), 1.0, atol=1e-3)
    shapes = [c for c in table.columns if c.startswith("blendshapes:")]
    assert len(shapes) == (53 if "blendshapes" in which else 0)  # 52 scores and `found`
    if shapes:  # every frame with a face has its scores, whether predicted yet or not
        assert table.loc[table.face == 1, shapes].notna().all().all()
        assert table.loc[table.face == 0, shapes].isna().all().all()
        scores = table.loc[table.face == 1, shapes[:-1]]
        assert ((scores >= 0) & (scores <= 1)).all().all()
    faces = table.face.cumsum()  # frames with a face so far: the window's fill
    if which == "cnn_lstm_partial":  # a prediction after every frame from the first face on
        assert with_pred.tolist() == (faces > 0).tolist()
    else:  # once the window holds a clip's 16 frames
        assert with_pred.tolist() == (table.window == 16).tolist()
        assert with_pred.any() and not with_pred.iloc[:15].any()


def test_a_source_that_is_not_a_video_is_named(run, tmp_path):
    workdir, _ = run
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.predict.stream",
            "-",
            "--model",
            str(workdir / "results/models/gru/hog"),
            "--threads",
            "1",
        ],  # fmt: skip
        input=b"this is not a video stream\n" * 100,
        capture_output=True,
        cwd=workdir,
        timeout=300,
    )
    assert done.returncode != 0
    assert "stdin: cannot open the stream" in done.stderr.decode(), done.stderr.decode()[-2000:]
    assert "Errno" not in done.stderr.decode()


def test_a_stream_piped_from_the_start_loses_nothing_before_it_is_ready(run, tmp_path):
    """MPEG-TS written at its frame rate from the moment the tool starts (ffmpeg -re … |):
    frames sent while the networks loaded were dropped by the bounded queue (5 of 108
    processed, nothing predicted, exit 0), nothing said when the tool was ready, and the
    summary's fps counted the wait for the first frame."""
    import json
    import time

    import av

    from pipeline.predict.stream import feed

    workdir, _ = run
    video = workdir / "data" / "demo" / "videos" / "s02_anger_1.mp4"
    with av.open(str(video)) as c:
        n = sum(1 for _ in c.decode(c.streams.video[0]))
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.predict.stream", "-", "--model",
         str(workdir / "results/models/gru/hog"), "--threads", "1", "--device", "cpu"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
    )  # fmt: skip

    def send():
        try:
            feed(str(video), proc.stdin)  # at once, at the video's frame rate
        finally:
            proc.stdin.close()

    feeder = threading.Thread(target=send)
    feeder.start()
    lines = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    feeder.join()
    assert proc.wait(timeout=120) == 0, err[-3000:]
    wall = time.monotonic() - started
    import io

    table = pd.read_csv(io.StringIO(lines))
    summary = json.loads(err.strip().splitlines()[-1])
    assert "ready after" in err and summary["frames"] == n
    before = summary["received_before_ready"]
    assert before > 0  # the feed started with the tool: frames came while it loaded
    assert set(range(before)) <= set(table.frame)  # none of them dropped
    assert len(table) + summary["dropped"] == n == int(table.dropped.iloc[-1]) + len(table)
    assert table.pred.notna().any()
    # fps and seconds from the first frame processed, not from the start (the loading)
    assert summary["seconds"] <= wall - summary["ready_s"]
    assert summary["fps"] == pytest.approx(len(table) / summary["seconds"], rel=0.05)


def test_an_mp4_with_its_index_at_the_end_piped_is_named_with_the_fix(run, tmp_path):
    workdir, _ = run
    rng = np.random.default_rng(0)
    video = tmp_path / "index at the end.mp4"  # PyAV writes the index (moov) last
    write_video(video, (rng.integers(0, 255, (120, 160, 3), np.uint8) for _ in range(60)))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.predict.stream", "-", "--model",
         str(workdir / "results/models/gru/hog"), "--threads", "1"],
        input=video.read_bytes(), capture_output=True, cwd=workdir, timeout=300,
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "stdin: cannot decode the stream (Invalid data found" in err
    assert "-movflags +faststart" in err and "-f mpegts -" in err and "Errno" not in err


@pytest.mark.parametrize("name", ["gru/hog", "statspool/geometry+hog"])
def test_the_dag_predict_and_the_stream_agree_on_the_same_faces(run, tmp_path, name):
    """One preprocessing contract: a fold's model on one of its test videos gives the DAG's
    own test predictions through `pipeline.predict` and through the stream's live loop, fed
    the faces the face stage aligned (the stream finds its faces causally, frame by frame,
    so its crops differ; from the crops on, the three share every step)."""
    import h5py

    from pipeline.common import read_csv
    from pipeline.predict.online import Live
    from pipeline.predict.predictor import Predictor

    workdir, _ = run
    folds = read_csv(workdir / "results/folds.csv").set_index("video_id")
    videos = read_csv(workdir / "results/dataset/videos.csv").set_index("video_id")
    vid = sorted(folds.index)[0]
    fold = int(folds.fold[vid])
    model = workdir / f"results/models/{name}/fold{fold}"
    truth = read_csv(model / "predictions.csv")
    truth = truth[truth.video_id == vid].reset_index(drop=True)
    cols = [c for c in truth.columns if c.startswith("p_")]
    predictor = Predictor(str(model), "cpu", 1)
    predictor.video(str(workdir / videos.path[vid]), tmp_path / "predict")
    windows = read_csv(tmp_path / "predict" / "windows.csv")
    np.testing.assert_allclose(windows[cols], truth[cols], atol=1e-5)  # predict = the DAG

    live = Live(predictor)
    for shard in sorted((workdir / "results/aligned").glob("shard-*.h5")):
        with h5py.File(shard, "r") as f:
            if vid in f:
                crops, points = f[vid]["frames"][:], f[vid]["points"][:]
    ends = {}
    for t in range(len(crops)):
        probs = live.advance({"face": True, "crop": crops[t], "points": points[t]})
        if probs is not None:
            ends[t + 1] = probs
    full = truth[truth.stop - truth.start == live.length]
    assert len(full) > 0
    for _, row in full.iterrows():
        np.testing.assert_allclose(ends[row.stop], row[cols].to_numpy(float), atol=1e-5)
