"""`python -m pipeline.predict` on the tiny DAG's trained models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.common import read_csv
from pipeline.encode import write_video


def predict(workdir, *args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.predict", *map(str, args), "--threads", "1"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "name",
    [
        "gru/hog",
        "c3d/pixels",
        "statspool/geometry+hog",
        "statspool@calibrated/geometry",
        "statspool/blendshapes+geometry",
    ],
)
def test_predict_repeats_the_pipeline_for_a_video_of_the_test_fold(run, tmp_path, name):
    """A fold's model on one of its test videos gives that fold's test predictions again:
    decoding, faces, alignment, backbone(s), windows and the person calibration (with the
    subject's other videos given) are repeated exactly."""
    workdir, root = run
    videos = read_csv(workdir / "results/dataset/videos.csv").set_index("video_id")
    folds = read_csv(workdir / "results/folds.csv").set_index("video_id")
    vid = sorted(folds.index)[0]
    fold = int(folds.fold[vid])
    model = f"results/models/{name}/fold{fold}"
    calibration = []
    if "calibrated" in name:
        without = predict(workdir, videos.path[vid], "--model", model, "--out", tmp_path / "no")
        assert without.returncode == 1 and "--calibrate VIDEO" in without.stderr
        same = folds.index[(folds.subject == folds.subject[vid]) & (folds.index != vid)]
        calibration = ["--calibrate", *videos.path[sorted(same)]]
    done = predict(workdir, videos.path[vid], "--model", model, "--out", tmp_path, *calibration)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / Path(videos.path[vid]).stem  # one folder per video, one video or many
    assert read_csv(tmp_path / "summary.csv").status.tolist() == ["done"]
    windows = read_csv(out / "windows.csv")
    truth = read_csv(workdir / f"results/models/{name}/fold{fold}/predictions.csv")
    truth = truth[truth.video_id == vid].reset_index(drop=True)
    classes = [c[2:] for c in truth.columns if c.startswith("p_")]
    cols = [f"p_{c}" for c in classes]
    assert list(windows.start) == list(truth.start) and list(windows.stop) == list(truth.stop)
    np.testing.assert_allclose(windows[cols], truth[cols], atol=1e-4)
    frames = read_csv(out / "frames.csv")
    assert len(frames) == int(videos.n_frames[vid])
    shapes = [c for c in frames.columns if c.startswith("blendshapes:")]
    assert len(shapes) == (53 if "blendshapes" in name else 0)  # 52 scores and `found`
    if shapes:  # the DAG's own per-frame table has the same scores
        from dagtools import snakemake

        if not (workdir / "results/frames/index.csv").exists():
            assert snakemake(workdir, root, "--cores", "2", "results/frames").returncode == 0
        table = read_csv(workdir / "results/frames" / f"{vid}.csv")
        np.testing.assert_allclose(frames[shapes], table[shapes], atol=1e-3, equal_nan=True)
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
    per_fold = [read_csv(tmp_path / f"f{k}/{video.stem}/windows.csv") for k in (0, 1)]
    mean = read_csv(tmp_path / f"all/{video.stem}/windows.csv")
    cols = [c for c in mean.columns if c.startswith("p_")]
    np.testing.assert_allclose(mean[cols], (per_fold[0][cols] + per_fold[1][cols]) / 2, atol=1e-6)
    summary = json.loads((tmp_path / f"all/{video.stem}/summary.json").read_text())
    assert len(summary["checkpoints"]) == 2
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
    per_fold = [read_csv(outs[k] / video.stem / "windows.csv") for k in (0, 1)]
    mean = read_csv(outs["all"] / video.stem / "windows.csv")
    cols = [c for c in mean.columns if c.startswith("p_")]
    np.testing.assert_allclose(mean[cols], (per_fold[0][cols] + per_fold[1][cols]) / 2, atol=1e-6)


def test_a_video_without_a_face_is_a_clear_error(run, tmp_path):
    workdir, _ = run
    video = tmp_path / "empty room.mp4"
    write_video(video, np.full((20, 240, 320, 3), 90, np.uint8))
    done = predict(workdir, video, "--model", "results/models/gru/hog", "--out", tmp_path / "o")
    assert done.returncode == 1
    assert "empty room.mp4: no usable face in any of its 20 frames" in done.stderr
    assert "1 of 1 videos failed" in done.stderr and "--retry-failed" in done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "o").glob("*/windows.csv"))
    summary = read_csv(tmp_path / "o/summary.csv")
    assert summary.status.tolist() == ["failed"] and "no usable face" in summary.reason[0]


def test_a_missing_model_folder_is_a_clear_error(run, tmp_path):
    workdir, _ = run
    video = sorted((workdir / "data/demo/videos").glob("*.mp4"))[0]
    done = predict(workdir, video, "--model", "results/models/nothing", "--out", tmp_path)
    assert done.returncode == 1 and "results/models/nothing: does not exist" in done.stderr
    assert "The trained models near it: results/models/c3d/pixels" in done.stderr
    assert done.stderr.count("does not exist") == 1  # once, not as a log line and again
    assert "Traceback" not in done.stderr


def test_inputs_expand_to_each_video_once_with_unique_ids(tmp_path):
    from PIL import Image

    from pipeline.common import ConfigError
    from pipeline.predict import expand_inputs

    root = tmp_path / "set"
    for name in ("a/clip.mp4", "b/clip.MOV", "b/notes.txt", "c/clip.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded here")
    frames = root / "b" / "frames 1"
    frames.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / f"f{i}.png")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("path,label,video_id\nset/a/clip.mp4,joy,\nset/c/clip.mp4,anger,mine\n")
    items = expand_inputs([str(root), str(sheet), str(root / "c" / "clip.mp4"), str(frames)])
    # the folder: its videos and frame folders in natural order (not notes.txt, not the
    # frames inside the frame folder); the sheet's and the last two inputs' files again are
    # predicted once; the sheet's own ids
    assert [(vid, p.relative_to(tmp_path).as_posix(), label) for vid, p, label, *_ in items] == [
        ("a__clip", "set/a/clip.mp4", None),
        ("b__clip", "set/b/clip.MOV", None),
        ("b__frames_1", "set/b/frames 1", None),
        ("c__clip", "set/c/clip.mp4", None),
    ]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "clip.mp4").write_bytes(b"")
    same_name = expand_inputs([str(root / "a" / "clip.mp4"), str(tmp_path / "x" / "clip.mp4")])
    assert [vid for vid, *_ in same_name] == ["clip", "clip_2"]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "me.png")
    photos = tmp_path / "photos.csv"
    photos.write_text("path,reference\nset/a/clip.mp4,me.png\nset/c/clip.mp4,\n")
    assert [r for *_, r, _ in expand_inputs([str(photos)])] == [str(tmp_path / "me.png"), None]
    photos.write_text("path,reference\nset/a/clip.mp4,you.png\n")
    with pytest.raises(ConfigError, match="line 2: reference photo .*you.png' does not exist"):
        expand_inputs([str(photos)])
    with pytest.raises(ConfigError, match="nothing.mp4: no such video file, folder or sheet"):
        expand_inputs([str(tmp_path / "nothing.mp4")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no videos in this folder"):
        expand_inputs([str(tmp_path / "empty")])
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.mp4,joy\n")
    with pytest.raises(ConfigError, match="bad.csv: no `path` column"):
        expand_inputs([str(bad)])


def test_batch_records_failures_goes_on_and_resumes(run, tmp_path):
    """A folder with two videos, a faceless and an undecodable one: the two are predicted
    exactly as one by one, the others recorded with their reasons; run again, nothing is
    redone; a failed video fixed is retried on request."""
    import shutil

    import torch

    from pipeline import predict

    workdir, _ = run
    demo_videos = sorted((workdir / "data/demo/videos").glob("*.mp4"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for video in demo_videos[:2]:
        shutil.copy(video, folder / video.name)
    write_video(folder / "empty room.mp4", np.full((12, 240, 320, 3), 90, np.uint8))
    (folder / "broken.mp4").write_bytes(demo_videos[2].read_bytes()[:3000])
    model, out = str(workdir / "results/models/gru/hog"), tmp_path / "out"
    try:
        table = predict.run_batch([str(folder)], model, str(out), "cpu", 2, progress=False)
        ids = ["broken", "empty_room", demo_videos[0].stem, demo_videos[1].stem]
        assert list(table.video_id) == ids
        assert list(table.status) == ["failed", "failed", "done", "done"]
        assert "broken.mp4: cannot decode" in table.reason[0]
        assert "empty room.mp4: no usable face in any of its 12 frames" in table.reason[1]
        assert (out / "broken" / "failed.json").is_file()
        for k, video in enumerate(demo_videos[:2]):  # two threads, in a batch = one by one
            one = predict.run(str(video), model, str(tmp_path / f"one{k}"), "cpu", 1)
            cols = [f"p_{c}" for c in one["classes"]]
            batch_windows = read_csv(out / video.stem / "windows.csv")
            np.testing.assert_allclose(
                batch_windows[cols], read_csv(tmp_path / f"one{k}/windows.csv")[cols], atol=1e-6
            )
            row = table.set_index("video_id").loc[video.stem]
            assert row.prediction == one["prediction"] and row.frames == one["frames"]
            np.testing.assert_allclose(
                row[cols].to_numpy(float), list(one["probabilities"].values()), atol=1e-6
            )
        on_disk = read_csv(out / "summary.csv")
        assert list(on_disk.video_id) == ids and list(on_disk.status) == list(table.status)
        written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        again = predict.run_batch([str(folder)], model, str(out), "cpu", 2, progress=False)
        assert list(again.status) == ["failed", "failed", "skipped", "skipped"]
        assert list(again.reason[:2]) == list(table.reason[:2])
        assert all(p.stat().st_mtime_ns == t for p, t in written.items() if p.name != "summary.csv")
        shutil.copy(demo_videos[2], folder / "broken.mp4")  # fixed: retried on request only
        assert (
            predict.run_batch([str(folder)], model, str(out), "cpu", 1, progress=False).status[0]
            == "failed"
        )
        fixed = predict.run_batch(
            [str(folder)], model, str(out), "cpu", 1, retry_failed=True, progress=False
        )
        assert list(fixed.status) == ["done", "failed", "skipped", "skipped"]
        assert not (out / "broken" / "failed.json").exists()
    finally:
        torch.set_num_threads(1)


def test_a_batch_reference_photo_leaves_the_callers_predictor_as_it_was(run, tmp_path):
    import cv2

    from pipeline import predict
    from pipeline.predict.predictor import Predictor

    workdir, _ = run
    predictor = Predictor(str(workdir / "results/models/meanpool/hog"), "cpu", 1)
    video, photo = tmp_path / "room.mp4", tmp_path / "person.png"
    write_video(video, np.full((6, 120, 160, 3), 90, np.uint8))
    cv2.imwrite(str(photo), np.full((120, 120, 3), 90, np.uint8))
    table = predict.run_batch(
        [str(video)],
        "",
        str(tmp_path / "out"),
        progress=False,
        predictor=predictor,
        reference=str(photo),
    )
    assert list(table.status) == ["failed"]  # no face in the photo or the video
    assert predictor.reference is None


def test_batch_from_a_sheet_on_the_command_line(run, tmp_path):
    workdir, _ = run
    videos = sorted((workdir / "data/demo/videos").glob("*.mp4"))[:2]
    sheet = tmp_path / "to predict.csv"
    sheet.write_text("path,video_id\n" + "".join(f"{v},c{i}\n" for i, v in enumerate(videos)))
    out = tmp_path / "out"
    done = predict(workdir, sheet, "--model", "results/models/gru/hog", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "videos": 2,
        "done": 2,
        "skipped": 0,
        "failed": 0,
        "out": str(out),
    }
    table = read_csv(out / "summary.csv")
    assert list(table.video_id) == ["c0", "c1"] and "label" not in table.columns
    for vid in ("c0", "c1"):
        names = {p.name for p in (out / vid).iterdir()}
        assert names == {"windows.csv", "frames.csv", "timeline.png", "summary.json"}
    assert not (out / "metrics.json").exists()  # nothing to score without labels


def test_a_labelled_sheet_is_scored_with_its_labels_mapped_and_unknown_ones_counted(run, tmp_path):
    """Cross-corpus: a sheet labelled `angry`, `disgust`, `neutral` and `happy` for a model of
    `anger`…`surprise` gave predictions and no accuracy, and no word about the names."""
    workdir, _ = run
    videos = sorted((workdir / "data/demo/videos").glob("s0[12]_*.mp4"))
    labels = {"anger": "angry", "fear": "neutral", "happiness": "happy"}
    sheet = tmp_path / "other corpus.csv"
    rows = [(v, labels.get(v.stem.split("_")[1], v.stem.split("_")[1])) for v in videos]
    sheet.write_text("path,label,subject\n" + "".join(f"{v},{x},{v.stem[:3]}\n" for v, x in rows))
    out = tmp_path / "out"
    done = predict(workdir, sheet, "--model", "results/models/gru/hog", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the sheet's labels 'angry', 'happy', 'neutral' are not classes of the model" in (
        done.stderr
    )
    assert "add --map-label angry=anger happy=happiness" in done.stderr
    first = json.loads((out / "metrics.json").read_text())
    assert first["unmapped"] == {"angry": 2, "happy": 2, "neutral": 2}

    done = predict(workdir, sheet, "--model", "results/models/gru/hog", "--out", out,
                   "--map-label", "angry=anger", "happy=happiness")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    table = read_csv(out / "summary.csv")
    assert list(table.status) == ["skipped"] * len(videos)  # predicted by the first run
    truth = table.label.replace({"angry": "anger", "happy": "happiness"})
    assert metrics["n"] == len(videos) == 12 and metrics["unmapped"] == {"neutral": 2}
    assert metrics["war"]["pooled"] == pytest.approx((truth == table.prediction).mean())
    assert metrics["war"]["low"] <= metrics["war"]["pooled"] <= metrics["war"]["high"]
    assert metrics["recall"]["neutral"] == 0.0 and metrics["interval_over"] == "subjects"
    grid = read_csv(out / "confusion.csv").set_index("label")
    assert list(grid.index) == [*metrics["classes"], "neutral"] and grid.to_numpy().sum() == 12
    assert grid.loc["neutral"].sum() == 2  # counted, not dropped
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["war"] == round(metrics["war"]["pooled"], 4)
    assert "2 videos have labels that are none of the model's classes" in done.stderr


@pytest.mark.parametrize("module", ["pipeline.predict", "pipeline.predict.stream"])
def test_every_option_says_what_it_does_and_a_default_that_matters(module):
    """--threads had no help text in predict and the stream, --queue's default was not shown."""
    text = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    ).stdout
    options = text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + options.strip("\n"))[1:]
    assert len(entries) >= 6
    for entry in entries:
        name, *rest = entry.split()
        metavars = {w for w in rest if w.isupper() or w.startswith("[") or w.endswith("]")}
        described = " ".join(w for w in rest if w not in metavars)
        assert re.search(r"[a-z]{3,} [a-z]{2,}", described), f"{module} {name}: no help text"
    assert "default: 2" in text  # --threads
    if module.endswith("stream"):
        assert "(default: 4)" in text  # --queue


def test_a_missing_model_folder_lists_the_trained_models(tmp_path, monkeypatch):
    from pipeline.common import ConfigError
    from pipeline.predict.steps import find_checkpoints

    monkeypatch.chdir(tmp_path)
    for folder in ("models/gru/hog/fold0", "models/gru/hog/fold1", "models/meanpool/hog/fold0",
                   "backbones/resnet-attention/fold0"):  # fmt: skip
        (tmp_path / "results" / folder).mkdir(parents=True)
        (tmp_path / "results" / folder / "model.pt").write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        find_checkpoints("results/models/gru/hgo")  # a typo
    text = str(err.value)
    assert "results/models/gru/hgo: does not exist" in text
    assert "The trained models near it: results/models/gru/hog, results/models/meanpool/hog" in text
    assert "backbones" not in text  # per-fold backbones are no classifier
    assert len(find_checkpoints("results/models/gru/hog")) == 2
    monkeypatch.chdir(tmp_path / "results/models")
    with pytest.raises(ConfigError, match="No trained model is near it"):
        find_checkpoints(tmp_path / "elsewhere/x/y")
