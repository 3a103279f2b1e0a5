"""MediaPipe's Face Landmarker (pipeline.faces.facemesh) and the blendshapes / mesh backbones."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pipeline.common import ConfigError


@pytest.fixture(scope="module")
def faces():
    """Aligned crops of generated faces: subject 1 (Grace Hopper's portrait, not smiling) and
    subject 3, each neutral (first frame) and at the apex of happiness and of surprise."""
    from pipeline.datasets.demo import render_subject
    from pipeline.faces.detector import Detector
    from pipeline.frontalize import align_frame

    detector = Detector({"min_face_size": 30, "landmarks": "none"})
    crops = {}
    for subject in (1, 3):
        for emotion in ("happiness", "surprise"):
            frames = render_subject(subject, emotion, 40, (320, 240), np.random.default_rng(1))
            for when, frame in (("neutral", frames[0]), (emotion, frames[-1])):
                box = detector.detect_full(frame)[0]
                crops[subject, when] = align_frame(frame, box.landmarks, 112)[0]
    return crops


@pytest.fixture(scope="module")
def blendshapes():
    from pipeline.backbones.mediapipe_face import Blendshapes

    backbone = Blendshapes()
    yield backbone
    backbone.close()


def test_the_model_file_is_googles_release_and_a_changed_one_is_refused(monkeypatch, tmp_path):
    from pipeline.common import file_digest
    from pipeline.faces import facemesh

    path = facemesh.model_path()
    assert path.name == "face_landmarker.task" and file_digest(path, 64) == facemesh.SHA256
    monkeypatch.setattr(facemesh, "SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="reinstall it .* or set backbones.blendshapes.model"):
        facemesh.model_path()
    own = tmp_path / "own.task"  # a user's own file is taken as it is
    shutil.copy(path, own)
    assert facemesh.model_path(str(own)) == own
    with pytest.raises(ConfigError, match="does not exist"):
        facemesh.model_path(str(tmp_path / "missing.task"))
    (tmp_path / "bad.task").write_bytes(b"not a bundle")
    with pytest.raises(ConfigError, match="not a Face Landmarker .task"):
        facemesh.Canonical.from_task(tmp_path / "bad.task")


def test_the_canonical_face_and_its_rigid_basis_come_out_of_the_bundle():
    from pipeline.faces.facemesh import canonical, model_path

    face = canonical(str(model_path()))
    assert face.mesh.shape == (468, 3) and len(face.basis) == len(face.weights) > 20
    assert np.all(face.weights > 0) and face.basis.max() < 468
    # left-right symmetric about x = 0, a face a dozen centimetres wide
    assert abs(face.mesh[:, 0].mean()) < 0.05 and 10 < np.ptp(face.mesh[:, 0]) < 20


def test_normalise_takes_out_rotation_scale_and_position():
    """The canonical face, turned 25° and tilted 10°, scaled to pixels and moved into image
    axes, comes back onto itself."""
    from scipy.spatial.transform import Rotation

    from pipeline.faces.facemesh import canonical, model_path, normalise

    face = canonical(str(model_path()))
    turn = Rotation.from_euler("yx", [25, 10], degrees=True).as_matrix()
    posed = 7.5 * face.mesh @ turn.T + [3.0, -2.0, 1.0]
    image = posed * [1.0, -1.0, -1.0] + [160, 120, 0]  # y down, z away from the camera
    points = np.concatenate([image, np.zeros((10, 3))])[None]  # + 10 iris points
    np.testing.assert_allclose(normalise(points, face)[0], face.mesh, atol=1e-6)
    assert np.isnan(normalise(np.full((1, 478, 3), np.nan), face)).all()


def test_a_smile_raises_the_smile_scores_and_surprise_the_brows(faces, blendshapes):
    """Generated faces (the demo's renderer): happiness pulls the lip corners up, surprise
    lifts the brows; the backbone's scores must say so, and not the other way round."""
    names = blendshapes.columns
    smile = [names.index("mouthSmileLeft"), names.index("mouthSmileRight")]
    brows = names.index("browInnerUp")
    for subject in (1, 3):
        out = blendshapes(
            np.stack([faces[subject, w] for w in ("neutral", "happiness", "surprise")])
        )
        assert out.shape == (3, 53) and out.dtype == np.float32
        assert (out[:, names.index("found")] == 1).all()
        assert out[1, smile].mean() > out[0, smile].mean() + 0.3, subject
        assert out[2, brows] > out[0, brows] + 0.3, subject
        assert out[2, smile].mean() < out[1, smile].mean() - 0.3, subject
        assert np.all((out[:, :52] >= 0) & (out[:, :52] <= 1))


def test_a_frame_without_a_face_takes_its_nearest_neighbours_scores(faces, blendshapes):
    noise = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    out = blendshapes(np.stack([noise, faces[1, "happiness"], noise, noise, faces[1, "neutral"]]))
    found = out[:, -1]
    assert found.tolist() == [0, 1, 0, 0, 1]
    np.testing.assert_array_equal(out[0, :-1], out[1, :-1])  # nearest: the face after it
    np.testing.assert_array_equal(out[2, :-1], out[1, :-1])  # tie: the earlier face
    np.testing.assert_array_equal(out[3, :-1], out[4, :-1])
    assert not blendshapes(noise[None]).any()  # no face in the batch at all: zeros


def test_regions_and_the_exported_columns(faces):
    from pipeline.backbones import build_backbone, exported
    from pipeline.backbones.mediapipe_face import Blendshapes, Mesh, mesh_regions

    upper = Blendshapes(region="upper")
    assert "browInnerUp" in upper.columns and not any(c.startswith("mouth") for c in upper.columns)
    lower = Blendshapes(region="lower")
    assert "jawOpen" in lower.columns and "browInnerUp" not in lower.columns
    names = [n for _, n in exported("blendshapes@upper", upper)]
    assert names[0] == "blendshapes@upper:browDownLeft" and names[-1].endswith(":found")
    regions = mesh_regions()
    assert len(regions["all"]) == 468 and set(regions["lower"]) < set(regions["contours"])
    mesh = build_backbone("mesh", {"region": "lower"})
    out = mesh(np.stack([faces[1, "neutral"], faces[1, "surprise"]]))
    assert out.shape == (2, 3 * len(regions["lower"]) + 1) and out[:, -1].tolist() == [1, 1]
    assert exported("mesh", mesh) == []  # 1,404 columns are not a table's
    with pytest.raises(ConfigError, match="backbones.mesh.region: unknown region 'mouth'"):
        Mesh(region="mouth")
    for backbone in (upper, lower, mesh):
        backbone.close()
