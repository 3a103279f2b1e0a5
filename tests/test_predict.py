"""`python -m pipeline.predict` on the tiny DAG's trained models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.common import read_csv
from pipeline.video import write_video


def predict(workdir, *args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.predict", *map(str, args), "--threads", "1"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "name", ["gru/hog", "c3d/pixels", "statspool/geometry+hog", "statspool@calibrated/geometry"]
)
def test_predict_repeats_the_pipeline_for_a_video_of_the_test_fold(run, tmp_path, name):
    """A fold's model on one of its test videos gives that fold's test predictions again:
    decoding, faces, alignment, backbone(s), windows and the person calibration (with the
    subject's other videos given) are repeated exactly."""
    workdir, _ = run
    videos = read_csv(workdir / "results/dataset/videos.csv").set_index("video_id")
    folds = read_csv(workdir / "results/folds.csv").set_index("video_id")
    vid = sorted(folds.index)[0]
    fold = int(folds.fold[vid])
    out = tmp_path / "out"
    model = f"results/models/{name}/fold{fold}"
    calibration = []
    if "calibrated" in name:
        without = predict(workdir, videos.path[vid], "--model", model, "--out", tmp_path / "no")
        assert without.returncode == 1 and "--calibrate VIDEO" in without.stderr
        same = folds.index[(folds.subject == folds.subject[vid]) & (folds.index != vid)]
        calibration = ["--calibrate", *videos.path[sorted(same)]]
    done = predict(workdir, videos.path[vid], "--model", model, "--out", out, *calibration)
    assert done.returncode == 0, done.stderr[-3000:]
    windows = read_csv(out / "windows.csv")
    truth = read_csv(workdir / f"results/models/{name}/fold{fold}/predictions.csv")
    truth = truth[truth.video_id == vid].reset_index(drop=True)
    classes = [c[2:] for c in truth.columns if c.startswith("p_")]
    cols = [f"p_{c}" for c in classes]
    assert list(windows.start) == list(truth.start) and list(windows.stop) == list(truth.stop)
    np.testing.assert_allclose(windows[cols], truth[cols], atol=1e-4)
    frames = read_csv(out / "frames.csv")
    assert len(frames) == int(videos.n_frames[vid])
    np.testing.assert_allclose(frames[cols].sum(axis=1), 1.0, atol=1e-5)
    assert frames.time_s.is_monotonic_increasing and set(frames.face) <= {0, 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prediction"] in classes and summary["windows"] == len(windows)
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_all_folds_form_an_ensemble(run, tmp_path):
    workdir, _ = run
    video = sorted((workdir / "data/demo/videos").glob("*.mp4"))[0]
    one = [
        predict(
            workdir,
            video,
            "--model",
            f"results/models/gru/hog/fold{k}",
            "--out",
            tmp_path / f"f{k}",
        )
        for k in (0, 1)
    ]
    both = predict(workdir, video, "--model", "results/models/gru/hog", "--out", tmp_path / "all")
    assert all(d.returncode == 0 for d in (*one, both)), both.stderr[-3000:]
    per_fold = [read_csv(tmp_path / f"f{k}/windows.csv") for k in (0, 1)]
    mean = read_csv(tmp_path / "all/windows.csv")
    cols = [c for c in mean.columns if c.startswith("p_")]
    np.testing.assert_allclose(mean[cols], (per_fold[0][cols] + per_fold[1][cols]) / 2, atol=1e-6)
    assert len(json.loads((tmp_path / "all/summary.json").read_text())["checkpoints"]) == 2
    # calibration videos for a model that was not trained calibrated are refused, not ignored
    model = "results/models/gru/hog"
    ignored = predict(
        workdir, video, "--model", model, "--out", tmp_path / "c", "--calibrate", video
    )
    assert ignored.returncode == 1 and "--calibrate is for models trained" in ignored.stderr


def test_folds_with_their_own_per_fold_backbone_form_an_ensemble(run, tmp_path):
    """Each fold's model reads features of its own fold's backbone checkpoint."""
    workdir, _ = run
    video = sorted((workdir / "data/demo/videos").glob("*.mp4"))[0]
    outs = {k: tmp_path / f"f{k}" for k in (0, 1, "all")}
    for k, out in outs.items():
        model = "results/models/gru/resnet-attention" + ("" if k == "all" else f"/fold{k}")
        done = predict(workdir, video, "--model", model, "--out", out)
        assert done.returncode == 0, done.stderr[-3000:]
    per_fold = [read_csv(outs[k] / "windows.csv") for k in (0, 1)]
    mean = read_csv(outs["all"] / "windows.csv")
    cols = [c for c in mean.columns if c.startswith("p_")]
    np.testing.assert_allclose(mean[cols], (per_fold[0][cols] + per_fold[1][cols]) / 2, atol=1e-6)


def test_a_video_without_a_face_is_a_clear_error(run, tmp_path):
    workdir, _ = run
    video = tmp_path / "empty room.mp4"
    write_video(video, np.full((20, 240, 320, 3), 90, np.uint8))
    done = predict(workdir, video, "--model", "results/models/gru/hog", "--out", tmp_path / "o")
    assert done.returncode == 1
    assert "empty room.mp4: no usable face in any of its 20 frames" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o/windows.csv").exists()


def test_a_missing_model_folder_is_a_clear_error(run, tmp_path):
    workdir, _ = run
    video = sorted((workdir / "data/demo/videos").glob("*.mp4"))[0]
    done = predict(workdir, video, "--model", "results/models/nothing", "--out", tmp_path)
    assert done.returncode == 1 and "no model.pt here or in fold*/" in done.stderr
