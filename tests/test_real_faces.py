"""What the pipeline uses on real faces: pose-normalised landmark geometry, statistics pooling,
fused backbones, person calibration, the per-fold fine-tuned FER network, model variants."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.common import ConfigError


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    import cv2

    y, p, r = np.radians([yaw, pitch, roll])
    ry = cv2.Rodrigues(np.array([0.0, y, 0.0]))[0]
    rx = cv2.Rodrigues(np.array([p, 0.0, 0.0]))[0]
    rz = cv2.Rodrigues(np.array([0.0, 0.0, r]))[0]
    return rz @ rx @ ry


def seen_from(points3d: np.ndarray, rot: np.ndarray, shape=(480, 640)):
    """68 object points (reference coordinates) seen by the frontalizer's camera at `rot`."""
    from pipeline.frontalize import Frontalizer, project_points, to_object

    matrix = Frontalizer.camera(shape)
    tvec = np.array([[20.0], [-10.0], [600.0]])
    return project_points(to_object(points3d), rot, tvec, matrix)


def test_frontal_points_undo_head_pose_and_keep_what_the_face_does():
    from pipeline.faces import reference3d as ref
    from pipeline.frontalize import Frontalizer

    front = Frontalizer(112)
    face = ref.landmarks_3d()
    raised = face.copy()
    raised[17:27, 1] -= 4.0  # brows up by 4 units (~7 mm)
    for pose in ((0, 0, 0), (25, 10, 15), (-30, -8, -10)):
        for shape, shift in ((face, 0.0), (raised, 4.0)):
            image = seen_from(shape, rotation(*pose))
            points = front.pose(image, (480, 640))["points"]
            # the pose is gone: rigid points land on the reference, brows keep their lift
            assert np.abs(points[27:36] - ref.FRONTAL_68[27:36]).max() < 1.5, pose
            lift = (ref.FRONTAL_68[17:27, 1] - points[17:27, 1]).mean()
            assert lift == pytest.approx(shift, abs=1.0), pose


def test_geometry_measures_shape_not_position_or_scale():
    from pipeline.backbones.geometry import Geometry
    from pipeline.faces.reference3d import FRONTAL_68

    geo = Geometry()
    reference = FRONTAL_68[None].astype(np.float32)
    feats = geo(reference)
    assert feats.shape == (1, geo.dim) == (1, len(geo.columns))
    offsets = feats[0, : 2 * 68]
    assert np.abs(offsets).max() < 1e-5  # the reference is no displacement
    # moved, scaled and turned in the image plane: the same features
    angle = np.radians(12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (1.7 * FRONTAL_68 @ rot.T + [30.0, -12.0])[None]
    np.testing.assert_allclose(geo(moved), feats, atol=1e-4)
    # a smile: lip corners up and out → corner heights grow, the brows do not move
    smile = FRONTAL_68.copy()
    smile[48] += [-3.0, -3.0]
    smile[54] += [3.0, -3.0]
    both = geo(np.stack([FRONTAL_68, smile]))
    col = {c: i for i, c in enumerate(geo.columns)}
    assert both[1, col["corner_l"]] > both[0, col["corner_l"]] + 0.05
    assert both[1, col["mouth_width"]] > both[0, col["mouth_width"]]
    assert both[1, col["brow19"]] == pytest.approx(both[0, col["brow19"]], abs=0.02)
    # a frame whose points are missing gets the reference, not NaN
    missing = np.full((1, 68, 2), np.nan)
    assert np.isfinite(geo(missing)).all() and np.abs(geo(missing)[0, :136]).max() < 1e-5


def test_geometry_regions_leave_out_the_other_half():
    from pipeline.backbones.geometry import Geometry

    upper, lower, whole = Geometry(region="upper"), Geometry(region="lower"), Geometry()
    assert not any(c.startswith(("mouth", "lips", "corner", "chin")) for c in upper.columns)
    assert "dx48" not in upper.columns and "dx19" in upper.columns
    assert "dx19" not in lower.columns and "mouth_open" in lower.columns
    assert upper.dim + lower.dim == whole.dim
    with pytest.raises(ConfigError, match="unknown region 'eyes'"):
        Geometry(region="eyes")


def test_geometry_reads_the_aligned_points_and_says_when_they_are_missing(tmp_path):
    from pipeline import features
    from pipeline.faces.reference3d import FRONTAL_68

    aligned = tmp_path / "aligned.h5"
    with h5py.File(aligned, "w") as f:
        g = f.create_group("a")
        g.create_dataset("frames", data=np.zeros((5, 8, 8, 3), np.uint8))
        g.create_dataset("points", data=np.repeat(FRONTAL_68[None], 5, 0).astype(np.float32))
        g.create_dataset("valid", data=np.ones(5, bool))
        g.attrs["fps"] = 25.0
    out = tmp_path / "geometry.h5"
    features.main(["--aligned", str(aligned), "--backbone", "geometry", "--out", str(out)])
    with h5py.File(out) as f:
        assert f["a"].shape[0] == 5 and f.attrs["backbone"] == "geometry"
    with h5py.File(aligned, "a") as f:
        del f["a"]["points"]
    with pytest.raises(ConfigError, match="needs aligned `points`.*face.landmarks: dlib"):
        features.main(["--aligned", str(aligned), "--backbone", "geometry", "--out", str(out)])


def test_statspool_sees_movement_that_the_mean_hides():
    """Two classes with the same mean per clip, one still and one moving: meanpool cannot
    tell them apart, statistics pooling can."""
    from pipeline.engine import Training, fit, predict
    from pipeline.models import build_model

    gen = torch.Generator().manual_seed(0)
    n, t, d = 80, 16, 3
    y = torch.arange(n) % 2
    x = 0.05 * torch.randn(n, t, d, generator=gen)
    wave = torch.sin(torch.linspace(0, 6.28, t))[None, :, None]
    x = x + (y[:, None, None] == 1) * 2.0 * wave
    settings = Training()
    accuracy = {}
    for name in ("meanpool", "statspool"):
        model = build_model(name, 2, (t, d), {})
        fit(model, x, y, settings, seed=0, device="cpu")
        accuracy[name] = float((predict(model, x, "cpu").argmax(1) == y.numpy()).mean())
    assert accuracy["statspool"] == 1.0 and accuracy["meanpool"] < 0.8
    model = build_model("statspool", 2, (t, d), {})
    ramp = torch.linspace(-1, 1, t)[None, :, None].repeat(1, 1, d)
    pooled = model.pooled(ramp)[0].reshape(5, d)
    np.testing.assert_allclose(
        pooled[:, 0], [0.0, ramp.std(1, unbiased=False)[0, 0], -1, 1, 1], atol=1e-5
    )


def feature_file(path, backbone: str, videos: dict[str, np.ndarray]) -> str:
    with h5py.File(path, "w") as f:
        f.attrs["backbone"] = backbone
        for vid, x in videos.items():
            f[vid] = x.astype(np.float16)
    return str(path)


def test_a_fused_backbone_reads_features_side_by_side(tmp_path):
    from pipeline.store import open_reader

    a = feature_file(tmp_path / "a.h5", "geometry", {"v": np.ones((20, 3))})
    b = feature_file(tmp_path / "b.h5", "hog", {"v": 2 * np.ones((20, 2))})
    reader = open_reader([a, b])
    assert reader.video("v").shape == (20, 5) and reader.video("v")[0].tolist() == [1, 1, 1, 2, 2]
    table = pd.DataFrame({"video_id": ["v"], "start": [4], "stop": [20]})
    assert reader.clips(table, 16).shape == (1, 16, 5)
    short = feature_file(tmp_path / "c.h5", "pixels", {"v": np.ones((19, 1))})
    from pipeline.common import DataError

    with pytest.raises(DataError, match=r"different frame counts \(20 in .*, 19 in .*\).*delete"):
        open_reader([a, short]).video("v")


def test_calibrated_standardises_each_video_with_its_subjects_other_videos(tmp_path):
    from pipeline.store import open_reader

    rng = np.random.default_rng(0)
    videos = {f"a{i}": 5 + rng.standard_normal((30, 2)) for i in range(3)}
    videos["a2"] += 10  # one video far from the person's others
    videos.update({f"b{i}": -3 + rng.standard_normal((30, 2)) for i in range(2)})
    path = feature_file(tmp_path / "f.h5", "hog", videos)
    subjects = {v: v[0] for v in videos}
    calibrated = open_reader([path], "calibrated", subjects)
    transductive = open_reader([path], "per_subject", subjects)
    # a2 is measured against a0 and a1 only: far above them, not pulled into its own mean
    assert calibrated.video("a2").mean() > 5 * transductive.video("a2").mean() > 0
    assert abs(calibrated.video("b0").mean()) < 1.0  # b1 calibrates b0: same person, same range
    # changing a video does not change its own calibration, only its neighbours'
    videos["a0"] = videos["a0"] + 100
    moved = open_reader([feature_file(tmp_path / "g.h5", "hog", videos)], "calibrated", subjects)
    lifted = moved.video("a0") - calibrated.video("a0")
    assert lifted.mean() == pytest.approx(
        100 / calibrated.person["a0"][0].others[1].mean(), rel=0.1
    )
    with pytest.raises(ConfigError, match="subject.*c have a single video"):
        open_reader([path], "calibrated", {**subjects, "b1": "c"})


def test_fused_names_and_variants_pair_like_their_parts():
    from pipeline import catalog

    config = {
        "backbones": {"geometry": {}, "fer-minixception": {}, "pixels": {}},
        "models": {
            "statspool": {"backbones": ["geometry+fer-minixception"]},
            "statspool@calibrated": {"backbones": ["geometry"], "normalize": "calibrated"},
        },
    }
    assert catalog.experiments(config) == [
        ("statspool", "geometry+fer-minixception"),
        ("statspool@calibrated", "geometry"),
    ]
    config["models"]["gru"] = {"backbones": ["geometry+pixels"]}
    with pytest.raises(ConfigError, match="only vector backbones can be fused"):
        catalog.experiments(config)
    config["models"]["gru"] = {"backbones": ["geometry+hog"]}
    with pytest.raises(ConfigError, match="asks for backbone 'hog', which is not under"):
        catalog.experiments(config)


def test_false_leaves_a_model_out_and_variants_are_checked_like_their_model(root):
    from pipeline import configcheck

    schema = configcheck.load_schema(configcheck.schema_path(root))
    config = {"models": {"gru": False, "statspool@cal": {"normalise": "calibrated"}}}
    configcheck.drop_disabled(config)
    assert "gru" not in config["models"]
    (problem,) = configcheck.unknown_keys(config, schema)
    assert "models.statspool@cal: unknown key 'normalise'" in problem and "normalize" in problem
    bad = {"models": {"statspool@cal": {"normalize": "someone"}}}
    (problem,) = configcheck.variant_problems(bad, schema)
    assert problem.startswith("models.statspool@cal.normalize: 'someone' is not one of")
    with pytest.raises(ConfigError, match="backbones.hog: true is not a setting"):
        configcheck.drop_disabled({"backbones": {"hog": True}})


def test_fer_finetuned_trains_on_the_folds_training_subjects_only(tmp_path):
    from pipeline import train_backbone
    from pipeline.backbones import build_backbone

    aligned = tmp_path / "aligned.h5"
    rows = []
    rng = np.random.default_rng(0)
    with h5py.File(aligned, "w", track_order=True) as f:
        for s in range(6):
            for k, label in enumerate(("a", "b")):
                vid = f"s{s}_{label}"
                g = f.create_group(vid)
                frames = rng.integers(0, 60, (6, 32, 32, 3)) + 120 * k
                g.create_dataset("frames", data=frames.astype(np.uint8))
                g.create_dataset("valid", data=np.ones(6, bool))
                rows.append({"video_id": vid, "subject": f"s{s}", "label": label, "fold": s % 2})
    folds = pd.DataFrame(rows)
    params = {"epochs": 2, "frames_per_video": 3, "val_subjects": 0.34, "batch_size": 4}
    checkpoint, history = train_backbone.train_backbone(
        "fer-finetuned", [str(aligned)], folds, 0, params
    )
    meta = checkpoint["meta"]
    assert set(meta["train_subjects"]) | set(meta["val_subjects"]) == {"s1", "s3", "s5"}
    assert len(meta["val_subjects"]) == 1 and meta["start_weights"] == "emotion_model.hdf5"
    assert set(history.phase) == {"fit"} and history.epoch.max() <= 2
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    backbone = build_backbone("fer-finetuned", {"batch": 4}, str(path))
    with h5py.File(aligned) as f:
        feats = backbone(f["s0_a"]["frames"][:])
    assert feats.shape == (6, 128 + 2) == (6, backbone.dim)
    np.testing.assert_allclose(feats[:, 128:].sum(1), 1.0, atol=1e-5)  # class probabilities
    assert backbone.describe()["columns"][-2:] == ["p_a", "p_b"]
