from functools import partial

import numpy as np

from pipeline.faces.reference3d import TEMPLATE_112
from pipeline.frontalize import align_frame, fill_nearest, umeyama


def similarity(points, angle_deg, scale, shift):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return points @ (scale * rot).T + shift


def test_umeyama_recovers_a_known_similarity():
    src = similarity(TEMPLATE_112, 17.0, 2.5, np.array([40.0, -12.0]))
    matrix = umeyama(src, TEMPLATE_112)
    mapped = src @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_112, atol=1e-9)
    assert np.isclose(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])), -17.0)


def svd_umeyama(src, dst):
    """Umeyama (1991) as published: SVD of the covariance, reflection excluded."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / ((s**2).sum() / len(src))
    return np.c_[scale * rot, mu_d - scale * rot @ mu_s]


def test_umeyama_closed_form_equals_the_svd_solution_even_for_mirrored_points():
    rng = np.random.default_rng(0)
    for trial in range(200):
        src = rng.normal(size=(int(rng.integers(2, 68)), 2)) * 50
        dst = rng.normal(size=src.shape) * 30 if trial % 2 else similarity(src, 30.0, 0.7, 5.0)
        if trial % 4 == 1:
            dst = dst * [-1, 1]  # a mirror image: the best similarity is not a reflection
        np.testing.assert_allclose(umeyama(src, dst), svd_umeyama(src, dst), atol=1e-9)
    same = np.ones((5, 2))
    np.testing.assert_allclose(umeyama(same, same + [3, 4]), [[1, 0, 3], [0, 1, 4]])


def test_align_frame_puts_a_marked_eye_on_the_template():
    frame = np.zeros((300, 400, 3), np.uint8)
    landmarks = similarity(TEMPLATE_112, -10.0, 1.8, np.array([120.0, 60.0]))
    x, y = np.round(landmarks[0]).astype(int)
    frame[y - 2 : y + 3, x - 2 : x + 3] = 255
    crop, roll = align_frame(frame, landmarks, 112)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert abs(xs.mean() - TEMPLATE_112[0, 0]) < 1.0 and abs(ys.mean() - TEMPLATE_112[0, 1]) < 1.0
    assert np.isclose(roll, -10.0, atol=0.01)  # the head is turned counter-clockwise


def test_fill_nearest_borrows_from_the_closest_valid_frame():
    lm = np.arange(6, dtype=float)[:, None, None] * np.ones((6, 5, 2))
    valid = np.array([False, True, False, False, False, True])
    filled = fill_nearest(lm, valid)
    assert list(filled[:, 0, 0]) == [1, 1, 1, 1, 5, 5]


# --- 3D frontalization -------------------------------------------------------------------------

import pytest  # noqa: E402

from pipeline.faces.reference3d import FRONTAL_68, INNER, MIRROR_68  # noqa: E402


def turn_head(image, landmarks5, degrees):
    """Render the portrait's head turned by `degrees` about a vertical axis.

    The head is an ellipsoid with a nose (not the frontalizer's reference surface), seen by an
    orthographic camera; hidden parts are not drawn. yaw > 0 turns the face to image right.
    """
    to_template = umeyama(landmarks5, TEMPLATE_112)
    scale = np.hypot(*to_template[:, 0])
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    tx = to_template[0, 0] * xs + to_template[0, 1] * ys + to_template[0, 2]
    ty = to_template[1, 0] * xs + to_template[1, 1] * ys + to_template[1, 2]
    u, v = (tx - 56) / 47, (ty - 72) / 66
    z = 30 * np.sqrt(np.clip(1 - u**2 - v**2, 0, None))
    z += 14 * np.exp(-0.5 * (((tx - 56) / 6) ** 2 + ((ty - 70) / 9) ** 2))
    z /= scale
    cx = (np.linalg.inv(np.vstack([to_template, [0, 0, 1]])) @ [56, 72, 1])[0]
    a = np.deg2rad(degrees)
    moved = cx + (xs - cx) * np.cos(a) + z * np.sin(a)
    out = np.empty_like(image)
    for r in range(h):
        row = moved[r]
        if degrees >= 0:
            seen = row >= np.maximum.accumulate(row) - 1e-9
        else:
            seen = row <= np.minimum.accumulate(row[::-1])[::-1] + 1e-9
        order = np.argsort(row[seen], kind="stable")
        source = np.interp(np.arange(w), row[seen][order], xs[r][seen][order])
        for c in range(3):
            out[r, :, c] = np.interp(source, np.arange(w), image[r, :, c])
    return out


@pytest.fixture(scope="module")
def face_tools():
    from pipeline.faces.detector import Detector

    return Detector({"min_face_size": 30})


def find(detector, image):
    face = detector.detect_full(image)[0]
    return face, detector.landmarker(image, face.box)


def shape_errors(detector, crop):
    """Landmarks re-detected on a crop: distance to the frontal reference (after a similarity
    fit) and left-right asymmetry, both in interocular distances."""
    _, lm = find(detector, crop)
    ref = FRONTAL_68 * crop.shape[0] / 112
    iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
    fit = umeyama(lm[INNER], ref[INNER])
    fitted = lm @ fit[:, :2].T + fit[:, 2]
    distance = np.linalg.norm(fitted[INNER] - ref[INNER], axis=1).mean() / iod
    mirrored = lm[MIRROR_68].copy()
    mirrored[:, 0] = 2 * lm[:, 0].mean() - mirrored[:, 0]
    asymmetry = np.linalg.norm(lm[INNER] - mirrored[INNER], axis=1).mean() / iod
    return distance, asymmetry


@pytest.mark.parametrize("portrait", ["astronaut", "hopper"])
def test_hassner_frontalization_undoes_a_head_turn(portrait, face_tools):
    from pipeline.datasets.demo import load_portrait
    from pipeline.frontalize import Frontalizer

    image = load_portrait(portrait)
    frontal = face_tools.detect_full(image)[0]
    frontalizer = Frontalizer(160)
    _, lm = find(face_tools, image)
    straight = frontalizer.pose(lm, image.shape)
    assert abs(straight["yaw"]) < 6 and abs(straight["pitch"]) < 6 and abs(straight["roll"]) < 6
    for degrees in (-30, 30):
        turned = turn_head(image, frontal.landmarks, degrees)
        face, lm = find(face_tools, turned)
        hassner, pose = frontalizer.warp(turned, lm)
        similar, _ = align_frame(turned, face.landmarks, 160)
        h_dist, h_asym = shape_errors(face_tools, hassner)
        s_dist, s_asym = shape_errors(face_tools, similar)
        assert h_dist < 0.85 * s_dist and h_asym < 0.7 * s_asym, (degrees, h_dist, s_dist)
        assert np.sign(pose["yaw"]) == np.sign(degrees) and abs(pose["yaw"]) > 5
        assert pose["visible"] < straight["visible"]


def test_soft_symmetry_fills_the_hidden_side_from_the_seen_side():
    from pipeline.frontalize import soft_symmetry

    crop = np.zeros((8, 8, 3), np.uint8)
    crop[:, 4:] = 200  # the right half was seen, the left half is dark
    seen = np.ones((8, 8), np.float32)
    seen[:, :4] = 0.0  # ... and the left half was hidden
    out = soft_symmetry(crop, seen, np.ones((8, 8), bool))
    assert (out[:, :4] == 200).all() and (out[:, 4:] == 200).all()
    half = seen.copy()
    half[:, :4] = 0.5
    assert (soft_symmetry(crop, half, np.ones((8, 8), bool))[:, :4] == 100).all()


def test_montage_marks_frames_without_a_face(tmp_path):
    import h5py
    from PIL import Image

    from pipeline.frontalize import montage

    with h5py.File(tmp_path / "a.h5", "w") as f:
        frames = f.create_dataset("frames", data=np.full((20, 112, 112, 3), 128, np.uint8))
        valid = np.ones(20, bool)
        valid[0] = False
        montage(frames, valid, tmp_path / "m.png")
    strip = np.asarray(Image.open(tmp_path / "m.png"))
    assert strip.shape == (64, 8 * 64, 3)
    assert tuple(strip[0, 0]) == (255, 0, 0) and tuple(strip[0, 64]) == (128, 128, 128)


def test_block_poses_match_one_frame_at_a_time_and_skip_a_degenerate_frame():
    import cv2

    from pipeline.faces.headpose import (
        Frontalizer,
        blur3,
        pose_angles,
        project_points,
        rotations,
        to_object,
    )
    from pipeline.faces.reference3d import landmarks_3d

    rng = np.random.default_rng(0)
    maps = rng.random((3, 32, 32)).astype(np.float32)
    for got, one in zip(blur3(maps), maps, strict=True):
        np.testing.assert_allclose(got, cv2.GaussianBlur(one, (3, 3), 0), atol=1e-6)
    vectors = rng.normal(0, 0.4, (5, 3))
    rot = rotations(vectors)
    position = rng.normal(0, 50, (5, 3)) + [0, 0, 600]
    many = pose_angles(rot, position)
    for t in range(5):
        np.testing.assert_allclose(rot[t], cv2.Rodrigues(vectors[t])[0], atol=1e-12)
        one = pose_angles(rot[t], position[t])
        assert [many[k][t] for k in one] == pytest.approx(list(one.values()), abs=1e-9)
    turned = pose_angles(rotations(np.array([[0.0, 0.3, 0.0]]))[0], np.array([0.0, 0.0, 600.0]))
    assert abs(turned["yaw"]) == pytest.approx(np.degrees(0.3)) and turned["roll"] == 0.0

    front = Frontalizer(112)
    matrix = front.camera((480, 640))
    seq = np.stack(
        [
            project_points(to_object(landmarks_3d()), r, np.array([10.0, -5.0, 600.0]), matrix)
            for r in rotations(np.array([[0, a, 0.1 * a] for a in np.linspace(-0.5, 0.5, 6)]))
        ]
    )
    seq[3] = np.nan  # no landmarks: no camera fits that
    block = front.poses(seq, (480, 640))
    assert block["ok"].tolist() == [True, True, True, False, True, True]
    assert np.isnan(block["yaw"][3]) and np.isnan(block["points"][3]).all()
    for t in (0, 2, 5):
        front.reset()
        one = front.pose(seq[t], (480, 640))
        assert one["yaw"] == pytest.approx(block["yaw"][t], abs=1e-3)
        np.testing.assert_allclose(one["points"], block["points"][t], atol=1e-3)
    assert abs(np.sign(np.diff(block["yaw"][[0, 1, 2, 4, 5]])).sum()) == 4  # turning one way


@pytest.mark.parametrize("method", ["similarity", "hassner"])
def test_montage_tiles_kept_while_aligning_are_the_stored_frames(tmp_path, face_tools, method):
    import h5py

    from pipeline.datasets import demo
    from pipeline.encode import write_video
    from pipeline.faces.stage import detect_video
    from pipeline.frontalize import Frontalizer, crops_dataset, frontalize_video, montage_picks

    path = tmp_path / "v.mp4"
    write_video(path, demo.render_subject(1, "anger", 21, (320, 240), np.random.default_rng(2)))
    arrays = detect_video(face_tools, str(path))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        det = f.create_group("faces")
        for name, values in arrays.items():
            if name != "cropped":
                det.create_dataset(name, data=values)
        tiles: dict = {}
        decode = {"target_fps": None, "folder_fps": 30.0}
        out = f.create_group("aligned")
        frames = partial(crops_dataset, out, "none")
        pose = frontalize_video(
            str(path), det, 112, method, Frontalizer(112), decode, frames, tiles
        )
        assert sorted(tiles) == montage_picks(21) == [0, 3, 6, 9, 11, 14, 17, 20]
        for t, crop in tiles.items():
            assert (crop == out["frames"][t]).all()
        assert np.isfinite(pose["yaw"]).all() and np.isfinite(pose["points"]).all()


def test_compression_changes_the_bytes_on_disk_not_the_crops(tmp_path, face_tools):
    import h5py

    from pipeline.datasets import demo
    from pipeline.encode import write_video
    from pipeline.faces.stage import detect_video
    from pipeline.frontalize import Frontalizer, crops_dataset, frontalize_video

    path = tmp_path / "v.mp4"
    write_video(path, demo.render_subject(2, "happiness", 20, (320, 240), np.random.default_rng(5)))
    arrays = detect_video(face_tools, str(path))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        det = f.create_group("faces")
        for name, values in arrays.items():
            if name != "cropped":
                det.create_dataset(name, data=values)
        decode = {"target_fps": None, "folder_fps": 30.0}
        stored = {}
        for compression in ("none", "lzf"):
            out = f.create_group(compression)
            frames = partial(crops_dataset, out, compression)
            frontalize_video(str(path), det, 112, "similarity", Frontalizer(112), decode, frames)
            stored[compression] = out["frames"]
        assert stored["none"].compression is None and stored["lzf"].compression == "lzf"
        assert np.array_equal(stored["none"][:], stored["lzf"][:])
        assert stored["lzf"].id.get_storage_size() < stored["none"].id.get_storage_size()


def test_the_similarity_warp_takes_its_five_points_from_the_68_landmarks(tmp_path, face_tools):
    import h5py

    from pipeline.datasets import demo
    from pipeline.encode import write_video
    from pipeline.faces.landmarks import five_points
    from pipeline.faces.reference3d import FRONTAL_68
    from pipeline.faces.stage import detect_video
    from pipeline.frontalize import Frontalizer, crops_dataset, frontalize_video

    # the frontal reference's 68 points give its eye centres, nose tip and mouth corners
    assert np.abs(five_points(FRONTAL_68) - TEMPLATE_112).max() < 4.0
    path = tmp_path / "v.mp4"
    write_video(path, demo.render_subject(0, "fear", 12, (320, 240), np.random.default_rng(4)))
    arrays = detect_video(face_tools, str(path))
    crops = {}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        det = f.create_group("faces")
        for name, values in arrays.items():
            if name != "cropped":
                det.create_dataset(name, data=values)
        decode = {"target_fps": None, "folder_fps": 30.0}
        for points in ("dlib", "mtcnn"):
            out = f.create_group(points)
            frames = partial(crops_dataset, out, "none")
            frontalize_video(
                str(path), det, 112, "similarity", Frontalizer(112), decode, frames, points5=points
            )
            crops[points] = out["frames"][:].astype(float)
    moved = np.abs(crops["dlib"] - crops["mtcnn"]).mean()
    assert 0 < moved < 40  # the same face, placed a little differently
