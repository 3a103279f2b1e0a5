"""End to end: the whole Snakemake DAG on a tiny generated demo, in a temporary directory."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from dagtools import TINY, job_counts, snakemake

from pipeline.common import read_csv, shard_of
from pipeline.encode import write_video
from pipeline.folds import check_folds
from pipeline.report import fmt
from pipeline.video import iter_frames


def test_metrics_are_consistent_and_complete(run):
    workdir, _ = run
    folds = read_csv(workdir / "results/folds.csv")
    for name in ("gru_hog", "c3d_pixels", "gru_resnet-attention"):
        m = json.loads((workdir / f"results/metrics/{name}.json").read_text())
        assert m["n_folds"] == 2 and m["n_videos"] == len(folds)
        assert m["classes"] == sorted(folds.label.unique())
        assert m["chance"]["uar"] == pytest.approx(1 / len(m["classes"]))
        for level in ("clip", "video"):
            cm = np.array(m[level]["pooled"]["confusion"])
            assert cm.sum() == m[level]["pooled"]["n"]
            assert m[level]["pooled"]["war"] == pytest.approx(np.trace(cm) / cm.sum())
            fold_wars = [f["war"] for f in m[level]["folds"]]
            assert m[level]["mean"]["war"] == pytest.approx(np.mean(fold_wars))
            assert all(0.0 <= f["uar"] <= 1.0 for f in m[level]["folds"])
        assert np.array(m["video"]["pooled"]["confusion"]).sum() == len(folds)
        # provenance: what the numbers came from
        assert m["protocol"] == "inductive" and m["normalize"] == "none"
        assert re.fullmatch(r"[0-9a-f]{12}", m["config_hash"])
        assert m["provenance"]["cv"]["k"] == 2 and m["provenance"]["face"]
        assert m["versions"]["torch"] and m["versions"]["python"]
        recall = m["video"]["recall"]
        assert len(recall["mean"]) == len(m["classes"])
    # a fused backbone and a person-calibrated variant, named as such
    fused = json.loads((workdir / "results/metrics/statspool_geometry+hog.json").read_text())
    assert fused["backbone"] == "geometry+hog" and fused["protocol"] == "inductive"
    assert set(fused["provenance"]["backbone"]) == {"geometry", "hog"}
    cal = json.loads((workdir / "results/metrics/statspool@calibrated_geometry.json").read_text())
    assert cal["model"] == "statspool@calibrated" and cal["protocol"] == "calibrated"
    assert cal["normalize"] == "calibrated" and cal["n_videos"] == len(folds)
    # the hash covers the sections a result depends on: same data, other model → other hash
    hashes = {
        json.loads((workdir / f"results/metrics/{n}.json").read_text())["config_hash"]
        for n in ("gru_hog", "c3d_pixels")
    }
    assert len(hashes) == 2


def test_report_has_every_section_and_the_comparison_file(run):
    workdir, _ = run
    html = (workdir / "results/report.html").read_text()
    for heading in (
        "<h2>Results</h2>",
        "<h3>Per fold</h3>",
        "<h2>Against the baseline</h2>",
        "<h2>Confusion matrices</h2>",
        "<h2>On-the-fly accuracy</h2>",
        "<h2>Training curves</h2>",
        "<h2>Dataset</h2>",
        "<h2>Faces</h2>",
        "<h2>Run time and memory</h2>",
        "<h2>What was run</h2>",
    ):
        assert heading in html, heading
    assert "Wilcoxon" in html and "smallest attainable two-sided p is 0.5" in html
    for stage in ("detect_faces", "frontalize", "extract_features", "train", "evaluate"):
        assert f'<td class="l">{stage}</td>' in html, stage
    # the run-time table holds every job of the DAG but the report (its inputs are declared)
    runtime = read_csv(workdir / "results/qc/runtime.csv").set_index("stage").jobs.to_dict()
    n_metrics = len(list((workdir / "results/metrics").glob("*.json")))
    assert runtime["train"] == 2 * n_metrics and runtime["evaluate"] == n_metrics
    # hog, pixels, geometry, blendshapes × 2 shards; resnet-attention × 2 folds × 2 shards
    assert runtime["train_backbone"] == 2 and runtime["extract_features"] == 4 * 2 + 2 * 2
    assert runtime["curve"] == 1  # statspool/geometry (curve.models)
    assert "<h2>Accuracy against the number of training people</h2>" in html
    curve = json.loads((workdir / "results/curves/statspool_geometry.json").read_text())
    assert [p["n_subjects"] for p in curve["points"]] == [1, 2]  # 2 training subjects a fold
    assert "95 %" in html and "McNemar" in html
    assert runtime["detect_faces"] == 2 and runtime["qc_skipped"] == 1 and "report" not in runtime
    pairs = read_csv(workdir / "results/comparison.csv")
    protocols = [
        json.loads(p.read_text())["protocol"] for p in (workdir / "results/metrics").glob("*.json")
    ]
    groups = [protocols.count(p) for p in set(protocols)]  # pairs only within a protocol
    assert sorted(groups) == [1, 8]
    expected = sum(2 * n * (n - 1) // 2 for n in groups)
    assert len(pairs) == expected and pairs.wilcoxon_p.between(0, 1).all()


@pytest.mark.parametrize("method", ["loso", "file"])
def test_loso_and_split_file_folds_drive_the_training_jobs(run, tmp_path, method):
    """For loso and file the folds are known once folds.csv exists (a checkpoint)."""
    workdir, root = run
    copy = tmp_path / method
    shutil.copytree(workdir, copy, symlinks=True)
    videos = read_csv(workdir / "results/dataset/videos.csv")
    subjects = sorted(videos.subject.unique())
    cv = {"method": method}
    if method == "file":  # three official folds: subjects 0, 1, the rest; one video unlisted
        fold_of = {s: min(i, 2) + 1 for i, s in enumerate(subjects)}
        rows = [f"{v},{fold_of[s]}" for v, s in zip(videos.video_id, videos.subject, strict=True)]
        (copy / "split.csv").write_text("video_id,fold\n" + "\n".join(rows[1:]) + "\n")
        cv["file"] = "split.csv"
    (copy / "cv.yaml").write_text(yaml.safe_dump({**TINY, "cv": cv}))
    args = ("--configfile", str(copy / "cv.yaml"), "--cores", "1")
    done = snakemake(copy, root, *args, "--until", "folds")
    assert done.returncode == 0, done.stderr[-3000:]
    folds = read_csv(copy / "results/folds.csv")
    n_folds = len(subjects) if method == "loso" else 3
    assert folds.fold.nunique() == n_folds
    check_folds(folds)
    skipped = read_csv(copy / "results/qc/folds_skipped.csv")
    assert list(skipped.video_id) == ([] if method == "loso" else [videos.video_id[0]])
    dry = snakemake(copy, root, *args, "-n", "results/report.html")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    experiments = len(list((workdir / "results/metrics").glob("*.json")))
    assert counts["train"] == n_folds * experiments
    assert counts["train_backbone"] == n_folds  # resnet-attention is fitted inside each fold
    assert counts["evaluate"] == experiments


def test_report_shows_both_models_with_chance_and_confusion_matrices(run):
    workdir, _ = run
    html = (workdir / "results/report.html").read_text()
    for name in ("gru_hog", "c3d_pixels", "gru_resnet-attention"):
        m = json.loads((workdir / f"results/metrics/{name}.json").read_text())
        for level in ("clip", "video"):
            for key in ("war", "uar"):
                assert fmt(m[level]["mean"][key], m[level]["std"][key]) in html
        assert f'alt="{m["model"]} / {m["backbone"]} (video level)"' in html
    assert "chance" in html and fmt(1 / 6) in html
    n_results = len(list((workdir / "results/metrics").glob("*.json")))
    assert n_results == 9  # gru × 2, c3d, meanpool × 2, statspool × 3, statspool@calibrated
    assert html.count('(video level)"') == n_results == html.count('(clip level)"')
    n_videos = len(read_csv(workdir / "results/dataset/videos.csv"))
    assert "Aligned faces" in html and html.count("<figure><img alt='") == min(12, n_videos)
    assert "http://" not in html and "https://" not in html


def test_training_outputs_baseline_and_onthefly(run):
    import torch

    workdir, _ = run
    folds = read_csv(workdir / "results/folds.csv")
    html = (workdir / "results/report.html").read_text()
    assert "Against the baseline" in html and "On-the-fly accuracy" in html
    assert "Training curves" in html
    for name in ("meanpool/hog", "meanpool/pixels", "gru/hog", "c3d/pixels"):
        for fold in (0, 1):
            out = workdir / f"results/models/{name}/fold{fold}"
            early = read_csv(out / "onthefly.csv")
            test_videos = set(folds.video_id[folds.fold == fold])
            assert set(early.video_id) == test_videos
            assert len(early) == 10 * len(test_videos)
            assert (
                early.groupby("video_id").frames_seen.apply(lambda s: s.is_monotonic_increasing)
            ).all()
            meta = torch.load(out / "model.pt", weights_only=True)["meta"]
            test_subjects = set(folds.subject[folds.fold == fold])
            assert not (set(meta["train_subjects"]) | set(meta["val_subjects"])) & test_subjects
            assert meta["classes"] == sorted(folds.label.unique()) and meta["versions"]["torch"]
        m = json.loads((workdir / f"results/metrics/{name.replace('/', '_')}.json").read_text())
        assert m["onthefly"]["fractions"][-1] == 1.0
        assert m["onthefly"]["war"]["mean"][-1] == pytest.approx(m["video"]["mean"]["war"])
        assert [f["fold"] for f in m["training"]] == [0, 1]


@pytest.mark.parametrize("name", ["gru/hog", "meanpool/pixels"])
def test_a_saved_model_reproduces_its_test_predictions(run, name):
    import torch

    from pipeline.engine import predict
    from pipeline.models import load_checkpoint
    from pipeline.store import ClipReader

    workdir, _ = run
    out = workdir / f"results/models/{name}/fold0"
    model, meta = load_checkpoint(out / "model.pt")
    pred = read_csv(out / "predictions.csv")
    backbone = name.split("/")[1]
    reader = ClipReader(sorted((workdir / f"results/features/{backbone}").glob("shard-*.h5")))
    x = torch.from_numpy(reader.clips(pred, meta["clip_length"]))
    probs = predict(model, x, "cpu")
    np.testing.assert_allclose(probs, pred[[f"p_{c}" for c in meta["classes"]]], atol=1e-5)


def test_adding_a_model_trains_only_that_model(run):
    workdir, root = run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["models"]["transformer"] = {"epochs": 1, "backbones": ["hog"]}
    changed = workdir / "added.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(changed))
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout + dry.stderr) == {
        "train": 2,
        "evaluate": 1,
        "compare": 1,
        "runtime": 1,
        "report": 1,
    }


def test_face_stages_record_tracks_landmarks_pose_and_montages(run):
    import h5py

    workdir, _ = run
    videos = read_csv(workdir / "results/dataset/videos.csv")
    seen = {}
    for shard in (0, 1):
        with h5py.File(workdir / f"results/faces/shard-{shard}.h5") as faces:
            for vid in faces:
                g = faces[vid]
                assert g["landmarks68"].shape == (len(g["valid"]), 68, 2)
                assert (g["track"][:][g["valid"][:]] >= 0).all()
        with h5py.File(workdir / f"results/aligned/shard-{shard}.h5") as aligned:
            for vid in aligned:
                g = aligned[vid]
                assert g.attrs["method"] == "hassner"
                quality = g["quality"][:]
                assert ((quality >= 0) & (quality <= 1)).all() and quality.mean() > 0.5
                assert np.nanmax(np.abs(g["yaw"][:])) < 45
                seen[vid] = shard
        montages = workdir / f"results/qc/montages/shard-{shard}"
        assert sorted(p.stem for p in montages.glob("*.png")) == sorted(
            v for v, s in seen.items() if s == shard
        )
    assert sorted(seen) == sorted(videos.video_id)


def test_changing_frontalization_keeps_detection(run):
    workdir, root = run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["frontalize"] = {"method": "similarity"}
    changed = workdir / "similarity.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(changed))
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["frontalize"] == 2 and "detect_faces" not in counts and "dataset" not in counts


def test_per_fold_backbone_never_sees_its_test_subjects(run):
    import h5py
    import torch

    workdir, root = run
    folds = read_csv(workdir / "results/folds.csv")
    for fold in (0, 1):
        saved = torch.load(
            workdir / f"results/backbones/resnet-attention/fold{fold}/model.pt", weights_only=True
        )
        test_subjects = set(folds[folds.fold == fold].subject)
        assert saved["meta"]["fold"] == fold and saved["meta"]["train_subjects"]
        assert not set(saved["meta"]["train_subjects"]) & test_subjects
        assert saved["meta"]["val_subjects"] == []  # resnet-attention trains on all of them
        history = read_csv(workdir / f"results/backbones/resnet-attention/fold{fold}/history.csv")
        assert list(history.epoch) == [1, 2] and history.loss.notna().all()  # the engine's
        with h5py.File(workdir / f"results/features/resnet-attention/fold{fold}/shard-0.h5") as f:
            assert json.loads(f.attrs["describe"])["fold"] == fold
    index = read_csv(workdir / "results/features/resnet-attention/index.csv")
    assert len(index) == 2 * len(folds)  # every video, once per fold
    # retraining the fold-1 backbone redoes fold 1's features and training only
    model = "results/backbones/resnet-attention/fold1/model.pt"
    dry = snakemake(workdir, root, "-n", "--forcerun", model, "--", "results/report.html")
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts == {
        "train_backbone": 1,
        "extract_fold_features": 2,
        "feature_index": 1,
        "train": 1,
        "evaluate": 1,
        "compare": 1,
        "runtime": 1,
        "report": 1,
    }, counts
    assert "output: results/features/resnet-attention/fold1/" in dry.stdout
    assert "output: results/features/resnet-attention/fold0/" not in dry.stdout


def test_folds_never_split_a_subject(run):
    workdir, _ = run
    folds = read_csv(workdir / "results/folds.csv")
    check_folds(folds)
    assert folds.groupby("fold").subject.nunique().min() >= 1


def test_second_run_has_nothing_to_do(run):
    workdir, root = run
    dry = snakemake(workdir, root, "-n", "results/report.html")
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_changing_one_learning_rate_reruns_only_that_model(run):
    workdir, root = run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["models"]["gru"]["lr"] = 0.002
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(changed))
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout + dry.stderr) == {
        "train": 4,
        "evaluate": 2,
        "compare": 1,
        "runtime": 1,
        "report": 1,
    }
    assert "models/gru/hog/fold0" in dry.stdout + dry.stderr
    assert "models/c3d" not in dry.stdout + dry.stderr


def test_unknown_model_fails_before_any_job_with_the_known_names(run):
    workdir, root = run
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "models": {"lstm9": {}}}))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(bad))
    assert dry.returncode != 0
    out = dry.stdout + dry.stderr
    assert "lstm9" in out and "gru" in out and "c3d" in out


def test_a_dataset_layout_adds_the_adapter_rule(tmp_path, request):
    root = Path(request.config.rootpath)
    (tmp_path / "CK+" / "cohn-kanade-images").mkdir(parents=True)
    (tmp_path / "CK+" / "Emotion").mkdir()
    config = {**TINY, "dataset": {"format": "ckplus", "root": str(tmp_path / "CK+")}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, root, "results/report.html", "-n")
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["adapt_dataset"] == 1 and "demo_data" not in counts


def test_forcerun_extract_features_reruns_features_and_what_depends_on_them(run):
    workdir, root = run
    dry = snakemake(
        workdir, root, "-n", "--forcerun", "extract_features", "--", "results/report.html"
    )
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts == {
        # hog, pixels, geometry, blendshapes × 2 shards (resnet-attention: per fold)
        "extract_features": 8,
        "feature_index": 4,
        # gru/hog, c3d/pixels, meanpool/hog, meanpool/pixels, statspool/geometry,
        # statspool/geometry+hog, statspool/blendshapes+geometry,
        # statspool@calibrated/geometry × 2 folds
        "train": 16,
        "evaluate": 8,
        "curve": 1,  # statspool/geometry's accuracy against the number of training people
        "compare": 1,
        "runtime": 1,
        "report": 1,
    }, counts


def test_until_frontalize_stops_after_alignment(tmp_path, request):
    root = Path(request.config.rootpath)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    dry = snakemake(tmp_path, root, "-n", "--until", "frontalize")
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout + dry.stderr) == {
        "demo_data": 1,
        "dataset": 1,
        "audit": 1,
        "audit_gate": 1,
        "detect_faces": 2,
        "frontalize": 2,
    }


def test_every_rule_declares_threads_memory_runtime_and_a_benchmark(root):
    text = "".join(p.read_text() for p in sorted((root / "workflow/rules").glob("*.smk")))
    rules = re.split(r"(?m)^(?:rule|checkpoint) ", text)[1:]
    assert len(rules) >= 18
    for body in rules:
        name = body.split(":", 1)[0]
        for key in ("threads:", "mem_mb=", "runtime=", "log:", "benchmark:"):
            assert key in body, f"rule {name} does not declare {key}"
    # the report renders small files of other rules: no HDF5 shard, no undeclared folder
    report = next(body for body in rules if body.startswith("report:"))
    assert ".h5" not in report and "logs/runtime" not in report.split("benchmark:")[0]
    assert "--benchmarks" not in report


def test_cuda_devices_ask_for_gpus_and_auto_does_not(run, tmp_path):
    workdir, root = run
    config = {**TINY, "train": {"device": "cuda", "seed": 0}}
    (workdir / "cuda.yaml").write_text(yaml.safe_dump(config))
    args = ("-n", "--forcerun", "train", "extract_features", "--", "results/report.html")
    cuda = snakemake(workdir, root, "--configfile", str(workdir / "cuda.yaml"), *args)
    auto = snakemake(workdir, root, *args)
    assert cuda.returncode == 0 and auto.returncode == 0, cuda.stderr + auto.stderr

    def gpus(out: str, rule: str) -> set[str]:
        jobs = re.findall(rf"rule {rule}:.*?resources: ([^\n]*)", out, re.S)
        assert jobs, rule
        return {re.search(r"gpu=(\d+)", r).group(1) if "gpu=" in r else "0" for r in jobs}

    assert gpus(cuda.stdout + cuda.stderr, "train") == {"1"}
    assert gpus(cuda.stdout + cuda.stderr, "extract_features") == {"0"}  # backbones: auto
    assert gpus(auto.stdout + auto.stderr, "train") == {"0"}


def test_a_crashed_frontalize_shard_resumes_and_redraws_montages(run, tmp_path, monkeypatch):
    import h5py

    from pipeline import frontalize

    workdir, _ = run
    faces = workdir / "results/faces/shard-0.h5"
    with h5py.File(faces) as f:
        videos = list(f)
    assert len(videos) >= 2
    args = [
        "--videos",
        str(workdir / "results/dataset/videos.csv"),
        "--faces",
        str(faces),
        "--out",
        str(tmp_path / "aligned.h5"),
        "--montages",
        str(tmp_path / "montages"),
        "--params",
        json.dumps(TINY["frontalize"]),
    ]
    real, seen = frontalize.frontalize_video, []

    def crash_on_second(path, *rest, **options):
        seen.append(path)
        if len(seen) == 2:
            raise RuntimeError("job killed")
        return real(path, *rest, **options)

    monkeypatch.setattr(frontalize, "frontalize_video", crash_on_second)
    with pytest.raises(RuntimeError):
        frontalize.main(args)
    seen.clear()
    monkeypatch.setattr(
        frontalize, "frontalize_video", lambda p, *r, **o: seen.append(p) or real(p, *r, **o)
    )
    frontalize.main(args)
    assert len(seen) == len(videos) - 1  # the first video was restored, not redone
    assert sorted(p.stem for p in (tmp_path / "montages").glob("*.png")) == sorted(videos)
    with (
        h5py.File(tmp_path / "aligned.h5") as a,
        h5py.File(workdir / "results/aligned/shard-0.h5") as b,
    ):
        assert list(a) == list(b)
        for vid in a:
            np.testing.assert_array_equal(a[vid]["frames"][:], b[vid]["frames"][:])


def test_per_subject_normalisation_trains_and_is_labelled_transductive(run, tmp_path):
    import torch

    from pipeline import evaluate, train

    workdir, _ = run
    r = workdir / "results"
    out = {
        k: tmp_path / f"{k}.{ext}"
        for k, ext in (
            ("weights", "pt"),
            ("history", "csv"),
            ("predictions", "csv"),
            ("onthefly", "csv"),
        )
    }
    args = [
        "--clips", str(r / "clips.csv"), "--folds", str(r / "folds.csv"),
        "--features", *map(str, sorted((r / "features/hog").glob("shard-*.h5"))),
        "--model", "gru", "--backbone", "hog", "--fold", "0",
        "--params", json.dumps(TINY["models"]["gru"]), "--normalize", "per_subject",
    ]  # fmt: skip
    for key, path in out.items():
        args += [f"--out-{key}", str(path)]
    train.main(args)
    meta = torch.load(out["weights"], weights_only=True)["meta"]
    assert meta["normalize"] == "per_subject"
    mine = read_csv(out["predictions"])
    theirs = read_csv(r / "models/gru/hog/fold0/predictions.csv")
    assert list(mine.video_id) == list(theirs.video_id)
    assert not np.allclose(mine.filter(like="p_"), theirs.filter(like="p_"))
    metrics = tmp_path / "m.json"
    evaluate.main(
        ["--predictions", str(out["predictions"]), "--model", "gru", "--backbone", "hog",
         "--params", json.dumps({"cv": {"normalize": "per_subject"}}), "--out", str(metrics)]
    )  # fmt: skip
    assert json.loads(metrics.read_text())["protocol"] == "transductive"


def test_portable_runs_every_stage_with_pinned_kernels(run, tmp_path):
    workdir, root = run
    config = {**TINY, "portable": True}
    (workdir / "portable.yaml").write_text(yaml.safe_dump(config))
    args = ("-n", "-p", "--forcerun", "detect_faces", "--", "results/report.html")
    portable = snakemake(workdir, root, "--configfile", str(workdir / "portable.yaml"), *args)
    native = snakemake(workdir, root, *args)
    assert portable.returncode == 0 and native.returncode == 0, portable.stderr + native.stderr
    commands = [line for line in portable.stdout.splitlines() if "-m pipeline." in line]
    assert commands and all("env ATEN_CPU_CAPABILITY=avx2" in c for c in commands)
    assert "ATEN_CPU_CAPABILITY" not in native.stdout


def test_a_video_replaced_in_place_reruns_its_shard_and_changes_its_predictions(run, tmp_path):
    """Same path, new content (another subject's clip, mirrored), new modification time: the
    videos are no rule's input files (the sheet names them), and a finished run once said
    "Nothing to be done" and kept serving the old video's faces, features and predictions."""
    workdir, root = run
    copy = tmp_path / "replaced"
    shutil.copytree(workdir, copy, symlinks=True)
    videos = read_csv(copy / "results/dataset/videos.csv").set_index("video_id")
    vid = videos.index[0]
    other = videos.index[videos.subject != videos.subject.iloc[0]][0]
    video = copy / "data/demo/videos" / Path(videos.path[vid]).name
    mirrored = [frame[:, ::-1] for frame in iter_frames(videos.path[other])]
    write_video(video, mirrored, fps=round(float(videos.fps[other])))
    shard = shard_of(vid, TINY["shards"])
    faces = [copy / f"results/faces/shard-{k}.h5" for k in range(TINY["shards"])]
    before = [path.stat().st_mtime_ns for path in faces]
    fold = int(read_csv(copy / "results/folds.csv").set_index("video_id").fold[vid])
    result = f"results/models/meanpool/hog/fold{fold}/predictions.csv"
    old = read_csv(copy / result)

    dry = snakemake(copy, root, "-n", result)
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = dry.stdout + dry.stderr
    assert "Updated input files" in plan and str(video.relative_to(copy)) in plan, plan[-3000:]
    assert job_counts(plan)["dataset"] == 1

    done = snakemake(copy, root, "--cores", "2", result)
    assert done.returncode == 0, done.stderr[-3000:]
    after = [path.stat().st_mtime_ns for path in faces]
    assert [a != b for a, b in zip(after, before, strict=True)] == [
        k == shard for k in range(TINY["shards"])
    ]  # its own shard's face job ran again, the other's did not
    new = read_csv(copy / result)
    columns = [c for c in new.columns if c.startswith("p_")]
    mine, others = new.video_id == vid, new.video_id != vid
    assert not np.allclose(new[mine][columns], old[old.video_id == vid][columns])
    np.testing.assert_allclose(new[others][columns], old[old.video_id != vid][columns])
