"""One source of truth for names, keys and defaults, and the config checks of configcheck.py.

The schema documents every key with its default; the Python side applies them (constructor
signatures, settings.Training, the stages' DEFAULTS). These tests fail when the two disagree.
"""

from __future__ import annotations

import inspect

import pytest
import yaml

from pipeline import catalog, configcheck
from pipeline.common import ConfigError


@pytest.fixture(scope="module")
def schema(request):
    from pathlib import Path

    root = Path(request.config.rootpath)
    return configcheck.load_schema(configcheck.schema_path(root))


def defaults_of(fn, skip=("self",)) -> dict:
    """Keyword arguments of `fn` that have defaults, with them."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if name not in skip and p.default is not inspect.Parameter.empty
    }


def schema_default(prop: dict, schema: dict):
    return configcheck._resolve(prop, schema).get("default", inspect.Parameter.empty)


def same(a, b) -> bool:
    """Defaults compare equal across YAML and Python (lists vs tuples, 1 vs 1.0)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def test_training_defaults_are_the_schemas(schema):
    from pipeline.settings import Training

    training = schema["definitions"]["training"]
    python = defaults_of(Training)
    assert set(python) == set(training) - {"dropout", "backbones", "normalize"}  # model / DAG keys
    for key, value in python.items():
        assert same(value, training[key]["default"]), key


@pytest.mark.parametrize("name", sorted(catalog.MODELS))
def test_model_keys_and_defaults_are_the_schemas(schema, name):
    from pipeline.models import DAG_KEYS, model_settings
    from pipeline.settings import Training

    block = schema["properties"]["models"]["properties"][name]["properties"]
    cls = catalog.load(catalog.MODELS, name, "model")
    arch = set(model_settings(name))
    training = set(Training.keys()) | set(DAG_KEYS)
    if cls.closed_form and "classify" not in catalog.MODELS[name].tasks:  # ridge: no classes
        assert set(block) == arch | {"val_subjects", "backbones", "normalize"}
    elif cls.closed_form:  # fitted in one call: no epochs, no optimiser, no validation split
        assert set(block) == arch | {"balance", "backbones", "normalize"}
    else:
        assert set(block) == arch | training, set(block) ^ (arch | training)
    for key, value in defaults_of(cls, skip=("self", "n_classes", "input_shape", "task")).items():
        assert same(value, schema_default(block[key], schema)), (name, key)


# Keys added after runs existed, given no schema default on purpose: a config that does not set
# one keeps its rule params, so its trained networks are not trained again (the description
# says the default).
UNFILLED = {("fer-finetuned", "refit")}


@pytest.mark.parametrize("name", sorted(catalog.BACKBONES))
def test_backbone_keys_and_defaults_are_the_schemas(schema, name):
    from pipeline.backbones import backbone_settings

    block = schema["properties"]["backbones"]["properties"][name]["properties"]
    assert set(block) == set(backbone_settings(name))
    entry = catalog.BACKBONES[name]
    functions = [catalog.resolve(entry.target)]
    if entry.per_fold:
        functions.append(catalog.resolve(entry.train))
    for fn in functions:
        for key, value in defaults_of(fn, skip=("self", "data", "checkpoint")).items():
            if (name, key) in UNFILLED:
                assert "default" not in block[key] and f"Default {value}".lower() in (
                    block[key]["description"].lower()
                ), (name, key)
                continue
            assert same(value, schema_default(block[key], schema)), (name, key)


@pytest.mark.parametrize(
    "module, section",
    [
        ("pipeline.faces.detector", "face"),
        ("pipeline.frontalize", "frontalize"),
        ("pipeline.clips", "clips"),
        ("pipeline.folds", "cv"),
        ("pipeline.datasets.demo", "demo"),
    ],
)
def test_stage_defaults_are_the_schemas(schema, module, section):
    import importlib

    python = importlib.import_module(module).DEFAULTS
    props = schema["properties"][section]["properties"]
    assert set(python) <= set(props)
    for key, value in python.items():
        assert same(value, props[key]["default"]), (section, key)


def test_an_unknown_model_key_names_it_and_the_valid_ones():
    from pipeline.models import build_model

    with pytest.raises(ConfigError) as err:
        build_model("gru", 3, (16, 8), {"hiden": 32, "lr": 0.01})
    message = str(err.value)
    assert "models.gru: unknown key 'hiden'" in message
    assert "hidden" in message and "lr" in message and "refit" in message


def test_an_unknown_backbone_key_names_it_and_the_valid_ones():
    from pipeline.backbones import build_backbone

    with pytest.raises(ConfigError, match=r"backbones.hog: unknown key 'sise'; valid keys: cell"):
        build_backbone("hog", {"sise": 32})
    # a per-fold backbone's training keys are its settings too; the extractor gets its own
    with pytest.raises(ConfigError, match="unknown key 'epoch'; valid keys: batch, batch_size"):
        build_backbone("resnet-attention", {"epoch": 3}, "model.pt")


def test_unknown_keys_are_found_anywhere_in_the_config(schema):
    config = {
        "models": {"gru": {"hiden": 3}, "c3d": {"augment": {"flop": True}}, "lstm9": {}},
        "backbones": {"hog": {"sise": 32}},
        "face": {"min_face": 20},
        "clip": {"length": 8},
    }
    problems = configcheck.unknown_keys(config, schema)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "config: unknown key 'clip'; valid keys: backbones, clips, curve, cv" in text
    assert "models: unknown key 'lstm9'; valid keys: c3d, cnn3d_convlstm_spp" in text
    assert "models.gru: unknown key 'hiden'; valid keys: augment, backbones" in text
    assert "models.c3d.augment: unknown key 'flop'; valid keys: brightness, contrast, crop" in text
    assert "backbones.hog: unknown key 'sise'; valid keys: cell, orientations, size" in text
    assert "face: unknown key 'min_face'" in text and "min_face_size" in text
    with pytest.raises(ConfigError, match="unknown keys"):
        configcheck.refuse_unknown_keys(config, schema)
    assert configcheck.unknown_keys({"models": {"gru": None}}, schema) == []


def validated(root, **sections) -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load((root / "config.yaml").read_text())
    config.update(sections)
    validate(config, str(configcheck.schema_path(root)))
    return config


def test_cross_key_problems_are_listed_together(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validated(
        root,
        face={"landmarks": "none"},
        frontalize={"method": "hassner"},
        backbones={"hog": {}, "pixels": {}, "facenet": {"weights": "missing.pt"}},
        cv={"method": "file", "file": "split.csv"},
        dataset={"format": "ckplus", "root": "nowhere"},
    )
    problems = configcheck.problems(config)
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "frontalize.method hassner needs 68-point landmarks; set face.landmarks: dlib" in text
    assert "backbones.facenet.weights is 'missing.pt', not a file" in text
    assert "cv.file 'split.csv' does not exist" in text
    assert "dataset.format is 'ckplus': set dataset.root" in text
    with pytest.raises(ConfigError, match="the config has problems"):
        configcheck.check(config)


def test_a_missing_sheet_and_an_impossible_pairing_are_problems(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validated(
        root,
        dataset={"sheet": "mine.csv"},
        backbones={"hog": {}},
        models={"c3d": {"backbones": ["hog"]}},
    )
    text = "\n".join(configcheck.problems(config))
    assert "dataset.sheet: 'mine.csv' does not exist" in text
    assert "model 'c3d' takes pixels but backbone 'hog' gives vectors" in text
    (tmp_path / "mine.csv").write_text("path,subject,label\n")
    config["models"] = {"gru": {}}
    assert configcheck.check(config) == [("gru", "hog")]


def test_a_regress_run_checks_its_annotation_files_and_models_before_any_job(
    root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.csv").write_text("time,valence\n0,0.5\n0,0.6\n")
    (tmp_path / "sheet.csv").write_text("path,subject,annotation\na.mp4,s1,a.csv\nb.mp4,s2,b.csv\n")
    config = validated(
        root,
        task="regress",
        dataset={"sheet": "sheet.csv", "annotation": {"range": [-1, 1]}},
        backbones={"hog": {}},
        models={"mstcn": {}, "c3d": {}},
    )
    text = "\n".join(configcheck.problems(config))
    assert "sheet.csv: line 3: annotation" in text and "b.csv' does not exist" in text
    assert "model 'c3d' cannot regress" in text
    (tmp_path / "sheet.csv").write_text("path,subject,annotation\na.mp4,s1,a.csv\n")
    config["models"] = {"mstcn": {}, "ridge": {}}
    assert configcheck.problems(config) == [
        "a.csv: line 3: time 0 does not increase (previous 0); sort the rows by time, one row "
        "per instant"
    ]


def test_the_demo_config_and_presets_have_no_problems(root, tmp_path, monkeypatch):
    from snakemake.utils import update_config

    schema = configcheck.load_schema(configcheck.schema_path(root))
    for presets in (["emop3d"], ["zoo"], ["backbones"], ["real"], ["real", "real-ablation"],
                    ["regress"]):  # fmt: skip
        config = yaml.safe_load((root / "config.yaml").read_text())
        for preset in presets:
            update_config(
                config, yaml.safe_load((root / f"workflow/presets/{preset}.yaml").read_text())
            )
        configcheck.drop_disabled(config)
        assert configcheck.unknown_keys(config, schema) == [], presets
        assert configcheck.variant_problems(config, schema) == [], presets
        assert catalog.experiments(config), presets
    real = yaml.safe_load((root / "config.yaml").read_text())
    update_config(real, yaml.safe_load((root / "workflow/presets/real.yaml").read_text()))
    configcheck.drop_disabled(real)
    assert catalog.experiments(real) == [
        ("meanpool", "fer-minixception"),
        ("meanpool@calibrated", "fer-minixception"),
        ("statspool", "blendshapes@upper+geometry+fer-minixception"),
        ("statspool@calibrated", "blendshapes@upper+geometry+fer-minixception"),
    ]
    config = validated(root)
    monkeypatch.chdir(tmp_path)
    assert configcheck.check(config)
