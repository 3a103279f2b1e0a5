"""The `onnx` backbone: a model file the user brings, run with onnxruntime.

The file is exported here from the fer-minixception port, so the ONNX backbone configured
with that network's preprocessing must give the port's features.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from pipeline.common import ConfigError

# fer-minixception's preprocessing, written as onnx settings
FER = {
    "size": 64,
    "colour": "grey",
    "scale": 1 / 127.5,
    "mean": 1.0,
    "std": 1.0,
    "outputs": ["pooled", "logits"],
    "softmax": ["logits"],
}


@pytest.fixture(scope="module")
def crops():
    """Two aligned demo portraits and 14 noisy crops (batches of 5 cut across them)."""
    from pipeline.datasets.demo import load_portrait
    from pipeline.faces.detector import Detector
    from pipeline.frontalize import align_frame

    detector = Detector({"min_face_size": 30, "landmarks": "none"})
    faces = []
    for name in ("astronaut", "hopper"):
        image = load_portrait(name)
        faces.append(align_frame(image, detector.detect_full(image)[0].landmarks, 112)[0])
    rng = np.random.default_rng(0)
    noisy = [
        np.clip(faces[k % 2] + rng.normal(0, 20, faces[0].shape), 0, 255).astype(np.uint8)
        for k in range(14)
    ]
    return np.stack(faces + noisy)


def test_onnx_backbone_gives_the_native_features(fer_onnx, crops):
    from pipeline.backbones import build_backbone
    from pipeline.backbones.fer_minixception import FERMiniXception

    native = FERMiniXception(device="cpu")(crops)
    backbone = build_backbone("onnx@fer", {"path": str(fer_onnx), "batch": 5, **FER})
    mine = backbone(crops)
    assert mine.shape == native.shape == (16, 135) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, native, atol=1e-4, rtol=0)
    np.testing.assert_allclose(mine[:, 128:].sum(1), 1.0, atol=1e-5)  # softmax applied
    assert backbone(crops[:0]).shape == (0, 135)
    described = backbone.describe()
    assert described["dim"] == 135 and described["input"] == [64, 64, 1]
    assert described["model"] == "fer.onnx" and len(described["weights_digest"]) == 16
    # one output only, no softmax: the raw logits
    logits = build_backbone(
        "onnx", {"path": str(fer_onnx), **FER, "outputs": ["logits"], "softmax": []}
    )(crops[:2])
    assert logits.shape == (2, 7)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               native[:2, 128:], atol=1e-4)  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": "nowhere/model.onnx"}, r"backbones.onnx@fer.path: nowhere/model.onnx does not"),
        ({"size": 96}, r"takes \['n', 1, 64, 64\] \(nchw\) but the settings make \[1, 96, 96\]"),
        ({"colour": "rgb"}, r"make \[3, 64, 64\] per frame; set size, colour and layout"),
        ({"layout": "nhwc"}, r"make \[64, 64, 1\] per frame"),
        ({"outputs": ["probs"]}, r"'probs' is not an output of fer.onnx; its outputs: pooled"),
        ({"input": "x"}, r"'x' is not an input of fer.onnx; its inputs: image"),
        ({"colour": "hsv"}, r"colour: 'hsv'; known: rgb, bgr, grey"),
        ({"mean": [0.5, 0.5, 0.5]}, r"mean: 3 values for 1 channel"),
        ({"columns": ["a", "b"]}, r"columns: 2 names for 135 features"),
    ],
)
def test_onnx_settings_that_do_not_fit_the_model_are_named(fer_onnx, change, message):
    from pipeline.backbones import build_backbone

    with pytest.raises(ConfigError, match=message):
        build_backbone("onnx@fer", {"path": str(fer_onnx), **FER, **change})


def test_a_file_that_is_not_a_model_is_named(tmp_path):
    from pipeline.backbones import build_backbone

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(ConfigError, match=r"model.onnx is not a model onnxruntime can load"):
        build_backbone("onnx", {"path": str(bad)})


def test_onnx_features_are_cached_like_any_backbone(fer_onnx, crops, tmp_path):
    from pipeline import features

    aligned = tmp_path / "aligned.h5"
    with h5py.File(aligned, "w") as f:
        g = f.create_group("clip")
        g.create_dataset("frames", data=crops)
        g.create_dataset("valid", data=np.arange(len(crops)) != 3)
        g.attrs["fps"] = 25.0
    out = tmp_path / "onnx@fer" / "shard-0.h5"
    params = {"path": str(fer_onnx), **FER}
    features.main(
        [
            "--aligned",
            str(aligned),
            "--backbone",
            "onnx@fer",
            "--params",
            json.dumps(params),
            "--out",
            str(out),
        ]  # fmt: skip
    )
    with h5py.File(out) as f:
        assert f.attrs["backbone"] == "onnx@fer" and f.attrs["input"] == "[64, 64, 1]"
        assert f["clip"].shape == (16, 135)
        described = json.loads(f.attrs["describe"])
        assert described["model"] == "fer.onnx" and described["outputs"] == ["pooled", "logits"]
        assert f.attrs["weights_digest"] == described["weights_digest"]
        assert f["clip"].attrs["valid_fraction"] == pytest.approx(15 / 16)


def test_onnx_variants_in_config(root, fer_onnx, tmp_path, monkeypatch):
    from snakemake.utils import validate

    from pipeline import catalog, configcheck

    monkeypatch.chdir(tmp_path)
    schema = configcheck.load_schema(configcheck.schema_path(root))
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["backbones"] = {
        "hog": {},
        "onnx@fer": {"path": str(fer_onnx), **FER},
        "onnx@gone": {"path": "gone.onnx"},
    }
    config["models"] = {"gru": {}}
    validate(config, str(configcheck.schema_path(root)))
    assert configcheck.variant_problems(config, schema) == []
    assert configcheck.problems(config) == [
        "backbones.onnx@gone.path is 'gone.onnx', not a file: give the local .onnx model "
        "(downloaded once; nothing is downloaded at run time)"
    ]
    assert ("gru", "onnx@fer") in catalog.experiments(config)
    config["backbones"]["onnx@gone"] = {"path": str(fer_onnx), "colour": "hsv", "sise": 3}
    found = configcheck.variant_problems(config, schema)
    assert any(p.startswith("backbones.onnx@gone.colour: 'hsv' is not one of") for p in found)
    assert any("backbones.onnx@gone" in p and "sise" in p for p in found), found


def test_the_docs_onnx_example_is_a_valid_config(root, tmp_path, monkeypatch):
    from snakemake.utils import validate

    from pipeline import catalog, configcheck

    text = (root / "docs/backbones.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    example = yaml.safe_load(next(b for b in blocks if "onnx@hsemotion" in b))
    model = tmp_path / "enet_b0_8_best_vgaf.onnx"
    model.write_bytes(b"stands in for the downloaded file")
    example["backbones"]["onnx@hsemotion"]["path"] = str(model)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config.update(example)
    monkeypatch.chdir(tmp_path)
    validate(config, str(configcheck.schema_path(root)))
    schema = configcheck.load_schema(configcheck.schema_path(root))
    assert configcheck.unknown_keys(config, schema) == []
    assert configcheck.variant_problems(config, schema) == []
    assert catalog.experiments(config) == [("meanpool", "onnx@hsemotion")]
    assert len(example["backbones"]["onnx@hsemotion"]["columns"]) == 8


def test_inspect_lists_inputs_and_outputs(fer_onnx):
    from pipeline.backbones.onnx import inspect

    assert inspect(fer_onnx).splitlines() == [
        "fer.onnx",
        "  input 'image': shape ['n', 1, 64, 64], tensor(float)",
        "  output 'pooled': shape ['n', 128], tensor(float)",
        "  output 'logits': shape ['n', 7], tensor(float)",
    ]
