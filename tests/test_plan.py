"""`pipeline.plan`: what the DAG asks of each job, computed without Snakemake, and the typed
preprocessing contract (`settings.Preprocessing`) it writes into every model."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from dagtools import TINY, job_counts, snakemake

from pipeline import configcheck, plan
from pipeline.settings import BackboneSpec, Preprocessing

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> dict:
    """The tiny run's config with the schema's defaults, as the Snakefile sees it."""
    from snakemake.utils import validate

    merged = copy.deepcopy(TINY)
    schema = configcheck.load_schema(configcheck.schema_path(ROOT))
    configcheck.drop_disabled(merged)
    validate(merged, str(configcheck.schema_path(ROOT)))
    configcheck.check(merged, schema)
    return merged


def test_the_preprocessing_of_a_fused_backbone_with_a_per_fold_part(config):
    config = copy.deepcopy(config)
    config["backbones"]["resnet-attention"] = {"size": 32}
    pre = json.loads(plan.preprocessing(config, "gru", "hog+resnet-attention", 1))
    assert pre["backbone"] == {
        "name": "hog+resnet-attention",
        "parts": [
            {"name": "hog", "params": config["backbones"]["hog"]},
            {
                "name": "resnet-attention",
                "params": {"size": 32},
                "checkpoint": "results/backbones/resnet-attention/fold1/model.pt",
            },
        ],
    }
    assert pre["decode"] == {k: config["dataset"][k] for k in ("folder_fps", "target_fps")}
    assert pre["face"] == config["face"] and pre["clips"] == config["clips"]
    assert pre["normalize"] == config["cv"]["normalize"]
    assert json.loads(plan.preprocessing(config, "statspool@calibrated", "geometry", 0))[
        "normalize"
    ] == ("calibrated")
    typed = Preprocessing.from_dict(pre)
    assert Preprocessing.from_dict(typed.to_dict()) == typed
    assert [s.name for s in typed.backbone.leaves()] == ["hog", "resnet-attention"]
    other_fold = Preprocessing.from_dict(
        json.loads(plan.preprocessing(config, "gru", "hog+resnet-attention", 0))
    )
    assert other_fold != typed and other_fold.same_model_as(typed)
    assert not Preprocessing.from_dict({**pre, "clips": {"length": 8}}).same_model_as(typed)


def test_a_model_trained_before_frontalize_points_existed_aligns_on_mtcnn_points():
    old = {
        "face": {},
        "frontalize": {"method": "similarity"},
        "backbone": {"name": "hog", "params": {}},
    }
    pre = Preprocessing.from_dict(old)
    assert pre.frontalize["points"] == "mtcnn" and pre.normalize == "none"
    assert pre.backbone == BackboneSpec("hog", {})


def test_wildcard_patterns_take_names_variants_and_fused_backbones_only():
    patterns = plan.patterns()
    assert re.fullmatch(patterns["model"], "statspool@calibrated")
    assert not re.fullmatch(patterns["model"], "statspoolx")
    assert re.fullmatch(patterns["backbone"], "blendshapes@upper+geometry+fer-minixception")
    assert not re.fullmatch(patterns["backbone"], "hog+")
    assert re.fullmatch(patterns["per_fold"], "fer-finetuned@refit")
    assert not re.fullmatch(patterns["shared"], "fer-finetuned")


def test_the_benchmark_files_are_those_of_the_jobs_the_dag_plans(config, tmp_path):
    """Every job the report's run-time table counts is planned, and nothing else (the demo
    generator, the runtime and report jobs themselves, and `all` are not counted)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    dry = snakemake(tmp_path, ROOT, "-n", "--cores", "2", "results/report.html")
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = job_counts(dry.stdout + dry.stderr)
    experiments = configcheck.check(config, configcheck.load_schema(configcheck.schema_path(ROOT)))
    curves = configcheck.curve_pairs(config, experiments)
    jobs = plan.benchmark_jobs(config, experiments, curves, [0, 1], [0, 1])
    counted: dict[str, int] = {}
    for rule, _ in jobs:
        counted[rule] = counted.get(rule, 0) + 1
    left_out = {"demo_data", "runtime", "report", "all"}
    assert counted == {r: n for r, n in planned.items() if r not in left_out}
    assert len({json.dumps(j, sort_keys=True) for j in jobs}) == len(jobs)  # each job once


def test_resources_and_the_interpreter():
    assert plan.train_mem_mb(100.0, 2) == 2 * (2000 + 1200)
    assert plan.shard_runtime(3) == 480 and plan.gpus_for("cuda:1") == 1
    assert plan.gpus_for("auto") == 0
    assert plan.interpreter({"portable": False}, "/x y/python") == "'/x y/python'"
    assert plan.interpreter({"portable": True}, "/p").startswith("env ATEN_CPU_CAPABILITY=avx2")


def test_videos_are_input_files_unless_snakemake_reads_their_path_as_a_variable(
    tmp_path, monkeypatch
):
    """Snakemake 9 expands "<name>" in input paths: a video named "<script>.mp4" stopped the
    DAG once videos became input files; its size and time are a param instead, and its shard
    reads the probe's table as a plain (not ancient) input."""
    from pipeline.common import shard_of

    monkeypatch.chdir(tmp_path)
    names = ["a.mp4", "<script>alert(1)<b>.mp4", "frames/f1.png", "frames/f2.png"]
    for name in names:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(b"x")
    (tmp_path / "data/sheet.csv").write_text(
        "path,subject,label\na.mp4,s1,x\n<script>alert(1)<b>.mp4,s2,y\nframes,s3,x\n"
    )
    config = {"dataset": {"format": "sheet", "sheet": "data/sheet.csv", "root": None}}
    assert plan.video_files(config) == ["data/a.mp4", "data/frames/f1.png", "data/frames/f2.png"]
    state = plan.untracked_state(config)
    assert len(state) == 16
    (tmp_path / "data/<script>alert(1)<b>.mp4").write_bytes(b"replaced")
    assert plan.untracked_state(config) != state
    (tmp_path / "data/sheet.csv").write_text("path,subject,label\na.mp4,s1,x\n")
    assert plan.untracked_state(config) == ""  # nothing to follow: the param stays empty
    ids = ["a", "odd", "frames"]
    paths = [tmp_path / "data" / n for n in ("a.mp4", "<script>alert(1)<b>.mp4", "frames")]
    probed = tmp_path / "probed.csv"
    probed.write_text(
        "video_id,path\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, paths, strict=True))
    )
    odd = shard_of("odd", 2)
    assert plan.shard_inputs(str(probed), odd, 2)[1] is False  # the table: a plain input
    assert plan.shard_inputs(str(probed), 1 - odd, 2)[1] is True
    files = [*plan.shard_inputs(str(probed), 0, 2)[0], *plan.shard_inputs(str(probed), 1, 2)[0]]
    assert sorted(files) == ["data/a.mp4", "data/frames/f1.png", "data/frames/f2.png"]
