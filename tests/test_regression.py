"""task: regress — frame-wise regression of continuous labels, end to end and in parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.continuous import ccc

REGRESS = {
    "demo": {"subjects": 4, "repetitions": 1, "min_frames": 18, "max_frames": 30,
             "width": 160, "height": 120},
    "shards": 2,
    "face": {"min_face_size": 20},
    "cv": {"k": 2},
    "task": "regress",
    "dataset": {"annotation": {"dimensions": ["intensity", "valence"], "range": [-1, 1]}},
    "backbones": {"hog": {"size": 48, "cell": 8}},
    "models": {
        "mstcn": {"epochs": 3, "channels": 16, "layers": 3},
        "gru": {"epochs": 2, "hidden": 16, "proj": 32},
        "ridge": {},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def regress_run(tmp_path_factory):
    """The tiny DAG with task: regress, to results/report.html: the workdir."""
    import yaml
    from conftest import ROOT
    from dagtools import snakemake

    workdir = tmp_path_factory.mktemp("regress")
    (workdir / "config.yaml").write_text(yaml.safe_dump(REGRESS))
    done = snakemake(workdir, ROOT, "--cores", "2", "results/report.html")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


def test_the_masked_losses_ignore_unlabelled_frames():
    from pipeline.objectives import masked_loss

    y = torch.tensor([[[0.0], [1.0], [float("nan")]], [[2.0], [float("nan")], [4.0]]])
    p = torch.tensor([[[1.0], [1.0], [100.0]], [[2.0], [-50.0], [2.0]]])
    assert masked_loss(p, y, "mse").item() == pytest.approx((1 + 0 + 0 + 4) / 4)
    known = torch.isfinite(y)
    want = 1 - ccc(y[known].numpy(), p[known].numpy())
    assert masked_loss(p, y, "ccc").item() == pytest.approx(want, rel=1e-5)
    empty = torch.full((1, 3, 1), float("nan"))
    assert masked_loss(p[:1], empty, "mse").item() == 0.0


def test_overlapping_windows_are_averaged_back_onto_frames():
    from pipeline.regression.train import onto_frames

    test = pd.DataFrame(
        {"video_id": ["a", "a", "b"], "start": [0, 2, 0], "stop": [4, 6, 3], "n_frames": [6, 6, 3]}
    )
    pred = np.zeros((3, 4, 1))
    pred[0, :, 0] = [1, 1, 1, 1]
    pred[1, :, 0] = [3, 3, 3, 3]
    pred[2, :, 0] = [5, 5, 5, 9]  # a padded clip: its 4th frame is padding
    frames = onto_frames(test, pred)
    np.testing.assert_allclose(frames["a"][:, 0], [1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(frames["b"][:, 0], [5, 5, 5])


@pytest.mark.parametrize("name", ["mstcn", "gru", "transformer", "ridge"])
def test_models_that_regress_give_an_output_per_frame(name):
    from pipeline.models import build_model

    model = build_model(name, 2, (12, 5), {}, task="regress")
    assert model.task == "regress"
    x = torch.randn(3, 12, 5)
    assert model(x).shape == (3, 12, 2)
    loss, out = model.objective(x, torch.randn(3, 12, 2), lambda p, y: ((p - y) ** 2).mean())
    assert loss.ndim == 0 and torch.isfinite(loss) and out.shape == (3, 12, 2)
    if name != "ridge":  # the same model built to classify gives one output per clip
        assert build_model(name, 2, (12, 5), {})(x).shape == (3, 2)


def test_a_model_that_cannot_regress_is_refused_by_name():
    from pipeline.catalog import check_task
    from pipeline.common import ConfigError

    with pytest.raises(ConfigError, match="model 'c3d' cannot regress; models that can: gru"):
        check_task("c3d", "regress")
    with pytest.raises(ConfigError, match="model 'ridge' cannot classify"):
        check_task("ridge", "classify")
    check_task("mstcn@long", "regress")  # variants are their model


def test_the_ridge_baseline_chooses_its_penalty_on_held_out_clips():
    from pipeline.models import build_model

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(60, 8, 4)).astype(np.float32))
    y = x.mean(1, keepdim=True)[..., :1].expand(-1, 8, 1).clone() * 2 + 0.5
    y[::7, :4] = float("nan")  # partly unlabelled clips still count by their labelled frames
    model = build_model("ridge", 1, (8, 4), {"alphas": [0.01, 1000.0]}, task="regress")
    model.fit_normalization(x[:40])
    row = model.fit_closed_form(x[:40], y[:40], None, x[40:], y[40:])
    assert row["alpha"] == 0.01 and row["val_loss"] < 0.01
    pred = model(x[40:]).detach()
    known = torch.isfinite(y[40:])
    assert ccc(y[40:][known].numpy(), pred[known].numpy()) > 0.99


def test_targets_follow_frame_times_and_frame_indexed_files(tmp_path):
    from pipeline.common import SheetError
    from pipeline.targets import build_targets

    (tmp_path / "sec.csv").write_text("time,v\n0.0,0.0\n1.0,1.0\n3.0,0.0\n")
    (tmp_path / "idx.csv").write_text("frame,v\n0,0.5\n10,-5\n20,0.7\n")
    videos = pd.DataFrame(
        {
            "video_id": ["a", "b", "c"],
            "annotation": [str(tmp_path / "sec.csv"), str(tmp_path / "idx.csv"), None],
            "source_fps": [10.0, 20.0, 10.0],
            "fps": [10.0, 10.0, 10.0],
        }
    )
    times = {"a": np.array([0.0, 0.5, 1.0, 2.0, 3.5]), "b": np.array([0.0, 0.5, 1.0])}
    targets, dims, qc = build_targets(videos, times, {"missing": [-5], "max_gap": 1.0})
    assert dims == ["v"]
    np.testing.assert_allclose(targets["a"][:, 0], [0.0, 0.5, 1.0, np.nan, np.nan])
    # source frame 10 (0.5 s at 20 fps) is unlabelled (-5): frames 0 and 20 are 1 s apart,
    # bridged with max_gap 1.0, not with 0.5
    np.testing.assert_allclose(targets["b"][:, 0], [0.5, 0.6, 0.7])
    tight, _, _ = build_targets(videos, times, {"missing": [-5], "max_gap": 0.5})
    np.testing.assert_allclose(tight["b"][:, 0], [0.5, np.nan, 0.7])
    assert qc.set_index("video_id").loc["a", "v_labelled"] == 0.6
    with pytest.raises(SheetError, match="task: regress needs an annotation file for every video"):
        build_targets(videos, {**times, "c": np.array([0.0])}, {})


def test_regression_end_to_end_on_the_tiny_dag(regress_run):
    import h5py
    import torch as t

    workdir = regress_run
    results = workdir / "results"
    folds = pd.read_csv(results / "folds.csv")
    with h5py.File(results / "targets.h5") as f:
        assert [str(d) for d in f.attrs["dimensions"]] == ["intensity", "valence"]
        lengths = {vid: len(f[vid]["values"]) for vid in f}
    for model in ("mstcn", "gru", "ridge"):
        metrics = json.loads((results / "metrics" / f"{model}_hog.json").read_text())
        assert metrics["task"] == "regress" and metrics["n_folds"] == 2
        for fold in (0, 1):
            run = results / "models" / model / "hog" / f"fold{fold}"
            meta = t.load(run / "model.pt", weights_only=True)["meta"]
            pred = pd.read_csv(run / "predictions.csv")
            tested = set(folds.subject[folds.fold == fold].astype(str))
            # no test subject's frames reach training (nor the held-out validation)
            assert set(meta["test_subjects"]) == tested == set(pred.subject.astype(str))
            assert not tested & set(meta["train_subjects"] + meta["val_subjects"])
            # every frame of every test video, once, and its truth from targets.h5
            assert pred.groupby("video_id").frame.count().to_dict() == {
                v: lengths[v] for v in pred.video_id.unique()
            }
            got = metrics["frame"]["folds"][fold]
            for d in ("intensity", "valence"):
                want = ccc(pred[f"true_{d}"], pred[f"pred_{d}"])
                assert got[f"ccc_{d}"] == pytest.approx(want, abs=1e-9)
        for d in ("intensity", "valence"):
            folds_ccc = [f[f"ccc_{d}"] for f in metrics["frame"]["folds"]]
            assert metrics["frame"]["mean"][f"ccc_{d}"] == pytest.approx(np.mean(folds_ccc))
    # new annotation settings re-run the targets and what follows, never a video stage
    from conftest import ROOT
    from dagtools import job_counts, snakemake

    gap = workdir / "gap.yaml"
    gap.write_text("dataset:\n  annotation:\n    max_gap: 0.3\n")
    planned = snakemake(workdir, ROOT, "-n", "results/report.html", "--configfile", str(gap))
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = job_counts(planned.stdout)
    assert counts.get("targets") == 1 and counts.get("train") == 6, counts
    assert not {"dataset", "detect_faces", "frontalize", "extract_features"} & set(counts)
    pairs = pd.read_csv(results / "comparison.csv")
    assert {"ccc_intensity", "ccc_valence"} == set(pairs.metric)
    html = (results / "report.html").read_text()
    assert "Affect over time" in html and "Against the baseline" in html
    assert html.count("predicted and true curves") == 3


def test_predict_draws_a_regress_models_curves_and_export_has_them(regress_run, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from dagtools import snakemake

    workdir = regress_run
    fold0 = workdir / "results/models/mstcn/hog/fold0"
    expected = pd.read_csv(fold0 / "predictions.csv")
    vid = sorted(expected.video_id.unique())[0]
    videos = pd.read_csv(workdir / "results/dataset/videos.csv").set_index("video_id")
    out = tmp_path / "pred"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.predict", videos.path[vid], "--model", str(fold0),
         "--out", str(out), "--threads", "1"],  # fmt: skip
        capture_output=True, text=True, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = out / Path(videos.path[vid]).stem
    frames = pd.read_csv(out / "frames.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "regress" and set(summary["means"]) == {"intensity", "valence"}
    assert (out / "timeline.png").stat().st_size > 1000
    mine = expected[expected.video_id == vid].sort_values("frame")
    for d in ("intensity", "valence"):  # the fold model on its own test video, as in training
        np.testing.assert_allclose(frames[d], mine[f"pred_{d}"], atol=2e-3)
    done = snakemake(workdir, ROOT, "--cores", "2", "results/frames")
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(workdir / "results/frames" / f"{vid}.csv")
    np.testing.assert_allclose(table["mstcn:hog:intensity"], mine.pred_intensity, atol=1e-6)
    np.testing.assert_allclose(table["label:valence"], mine.true_valence.to_numpy(float), atol=1e-6)
