import numpy as np
import pytest
from PIL import Image

from pipeline.datasets import demo
from pipeline.encode import write_video
from pipeline.faces.detector import Detector
from pipeline.faces.reference3d import TEMPLATE_112
from pipeline.faces.stage import detect_video
from pipeline.faces.tracking import Face, iou

PER_FRAME = {"detect_every": 1, "full_every": 1, "detect_width": 0}


def frames(subject: int, n: int, seed: int = 3) -> list[np.ndarray]:
    return demo.render_subject(subject, "happiness", n, (320, 240), np.random.default_rng(seed))


@pytest.fixture(scope="module")
def detector():
    return Detector({"detect_every": 5, "min_face_size": 30})


def face_size(boxes):
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def test_strided_detection_matches_per_frame_detection(tmp_path, detector):
    path = tmp_path / "v.mp4"
    write_video(path, frames(2, 25))
    fast = detect_video(detector, str(path), 25)
    slow = detect_video(Detector({**PER_FRAME, "min_face_size": 30}), str(path), 25)
    assert fast["valid"].all() and slow["valid"].all()
    assert np.flatnonzero(fast["detected"]).tolist() == [0, 5, 10, 15, 20, 24]
    error = np.abs(fast["landmarks"] - slow["landmarks"]).mean(axis=(1, 2)) / face_size(
        slow["boxes"]
    )
    assert error.max() < 0.03


def test_a_cut_gets_every_frame_between_detections_detected(tmp_path, detector):
    canvas = np.zeros((20, 240, 480, 3), np.uint8)
    video = frames(1, 20)
    for t in range(20):
        x = 0 if t < 12 else 160  # the face jumps 160 px at frame 12
        canvas[t, :, x : x + 320] = video[t]
    path = tmp_path / "cut.mp4"
    write_video(path, canvas)
    out = detect_video(detector, str(path), 20)
    assert out["valid"].all()
    assert out["detected"][10:15].all()  # the keyframes 10 and 15 disagree
    centers = (out["boxes"][:, 0] + out["boxes"][:, 2]) / 2
    assert np.ptp(centers[:12]) < 40 and np.ptp(centers[12:]) < 40
    assert centers[12:].mean() - centers[:12].mean() == pytest.approx(160, abs=20)


def test_frames_without_a_face_are_invalid_not_dropped(tmp_path, detector):
    video = np.stack(frames(0, 20))
    video[8:14] = 0  # the face is gone for six frames
    path = tmp_path / "gap.mp4"
    write_video(path, video)
    out = detect_video(detector, str(path), 20)
    assert len(out["valid"]) == 20
    assert not out["valid"][8:14].any()
    assert out["valid"][:8].all() and out["valid"][14:].all()
    assert np.isnan(out["boxes"][8:14]).all() and (out["scores"][8:14] == 0).all()


def test_video_longer_than_probed_keeps_every_decoded_frame(tmp_path, detector):
    path = tmp_path / "v.mp4"
    write_video(path, frames(3, 12))
    out = detect_video(detector, str(path), 5)
    assert len(out["valid"]) == 12 and out["valid"].all()


def test_agreement_and_iou():
    d = Detector({"max_motion": 0.15})
    a = Face(np.array([0, 0, 100, 100], np.float32), 0.99, np.zeros((5, 2), np.float32), 1)
    moved = Face(a.box + np.float32(10), 0.99, a.landmarks, 1)
    far = Face(a.box + np.float32(40), 0.99, a.landmarks, 1)
    assert d.agree(a, moved) and not d.agree(a, far) and not d.agree(a, None)
    assert iou(
        a.box, np.array([[0, 0, 100, 100], [50, 0, 150, 100]], np.float32)
    ).tolist() == pytest.approx([1.0, 1 / 3])


def test_face_crops_are_used_whole(tmp_path):
    grey = np.repeat(
        np.stack(frames(0, 6))[:, 60:180, 100:220].mean(-1, keepdims=True), 3, -1
    ).astype(np.uint8)
    small = np.stack([np.asarray(Image.fromarray(f).resize((48, 48))) for f in grey])
    path = tmp_path / "crop.mp4"
    write_video(path, small)
    configured = detect_video(Detector({"detector": "none"}), str(path), 6)
    assert configured["cropped"] and configured["valid"].all() and not configured["detected"].any()
    np.testing.assert_allclose(configured["landmarks"][0, 0], TEMPLATE_112[0] * 48 / 112, rtol=1e-5)
    assert configured["boxes"][0].tolist() == [0, 0, 48, 48]


def test_small_frames_without_a_face_are_taken_as_crops(tmp_path, detector):
    path = tmp_path / "noise.mp4"
    write_video(path, np.random.default_rng(0).integers(0, 255, (5, 48, 48, 3), dtype=np.uint8))
    out = detect_video(detector, str(path), 5)
    assert out.get("cropped") and out["valid"].all()


def test_large_frames_without_a_face_stay_invalid(tmp_path, detector):
    path = tmp_path / "dark.mp4"
    write_video(path, np.zeros((5, 240, 320, 3), np.uint8))
    out = detect_video(detector, str(path), 5)
    assert "cropped" not in out and not out["valid"].any()


def test_frame_times_are_recorded(tmp_path, detector):
    path = tmp_path / "v.mp4"
    write_video(path, frames(0, 6), fps=25)
    out = detect_video(detector, str(path), 6, fps=25.0)
    np.testing.assert_allclose(out["time"], np.arange(6) / 25, atol=1e-6)


def test_primary_subject_is_followed_and_other_faces_recorded_apart(tmp_path, detector):
    main = frames(0, 20)
    side = frames(4, 20, seed=9)
    canvas = np.full((20, 360, 640, 3), 90, np.uint8)
    for t in range(20):
        canvas[t, 60:300, 160:480] = main[t]  # large, centred
        small = np.asarray(Image.fromarray(side[t]).resize((160, 120)))
        canvas[t, 0:120, 0:160] = small  # small, in a corner
    path = tmp_path / "two.mp4"
    write_video(path, canvas)
    out = detect_video(detector, str(path), 20)
    assert out["valid"].all()
    centers = (out["boxes"][:, :2] + out["boxes"][:, 2:]) / 2
    assert (centers[:, 0] > 250).all() and (centers[:, 0] < 390).all()
    assert len(set(out["track"].tolist())) == 1
    others = out["others"]
    assert len(others) and (others[:, 1] != out["track"][0]).all()
    assert (others[:, 2] < 160).all()  # the corner face, recorded with its own track
    assert out["n_faces"][out["detected"]].max() == 2


def test_a_short_miss_is_interpolated_and_marked_filled(tmp_path):
    video = np.stack(frames(0, 20))
    video[9:12] = 0  # a three-frame dropout
    path = tmp_path / "blink.mp4"
    write_video(path, video)
    out = detect_video(Detector({**PER_FRAME, "min_face_size": 30, "max_gap": 5}), str(path), 20)
    assert out["valid"].all() and out["filled"][9:12].all() and out["filled"].sum() == 3
    assert not np.isnan(out["landmarks68"][9:12]).any()
    off = detect_video(Detector({**PER_FRAME, "min_face_size": 30, "max_gap": 0}), str(path), 20)
    assert not off["valid"][9:12].any()


def test_68_landmarks_agree_with_the_5_mtcnn_points(tmp_path, detector):
    path = tmp_path / "v.mp4"
    write_video(path, frames(1, 12))
    out = detect_video(detector, str(path), 12)
    lm = out["landmarks68"]
    assert lm.shape == (12, 68, 2) and not np.isnan(lm).any()
    five = np.stack(
        [lm[:, 36:42].mean(1), lm[:, 42:48].mean(1), lm[:, 30], lm[:, 48], lm[:, 54]], axis=1
    )
    size = face_size(out["boxes"])[:, None]
    error = np.linalg.norm(five - out["landmarks"], axis=-1) / size
    assert np.median(error) < 0.06, error


def test_landmark_smoothing_stays_within_runs():
    from pipeline.faces.landmarks import smooth

    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 68, 2)).astype(np.float32)
    points[20:] += 100  # another person from frame 20
    valid = np.ones(40, bool)
    valid[10] = False
    runs = np.r_[np.zeros(20), np.ones(20)].astype(int)
    out = smooth(points, valid, 2.0, runs)
    assert out[21:].min() > 90 and out[:20].max() < 10  # never blended across the change
    assert out[11:20].std() < 0.7 * points[11:20].std()  # jitter reduced
    assert np.array_equal(out[10], points[10])  # the invalid frame is left alone
    assert np.array_equal(smooth(points, valid, 0.0), points)


def test_missing_landmark_model_says_where_to_put_it(tmp_path):
    from pipeline.common import ConfigError
    from pipeline.faces.landmarks import predictor_path

    assert predictor_path().name == "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(ConfigError, match="shape_predictor_68_face_landmarks.dat"):
        predictor_path(str(tmp_path / "nope.dat"))


def test_a_sideways_phone_video_is_detected_upright(tmp_path, detector):
    from pipeline.video import probe

    upright = np.stack(frames(2, 10))  # (10, 240, 320, 3)
    stored = np.ascontiguousarray(np.rot90(upright, k=-1, axes=(1, 2)))  # sideways, 320 × 240
    path = tmp_path / "phone.mp4"
    write_video(path, stored, rotation=90)  # the player turns it back
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 320, 240)
    out = detect_video(detector, str(path), 10)
    reference = detect_video(detector, str(_write(tmp_path / "upright.mp4", upright)), 10)
    assert out["valid"].all()
    np.testing.assert_allclose(out["boxes"], reference["boxes"], atol=4)


def _write(path, video):
    write_video(path, video)
    return path


def test_a_crashed_face_shard_resumes_with_its_finished_videos(tmp_path, monkeypatch):
    import h5py
    import pandas as pd

    from pipeline.faces import stage as faces

    rows = []
    for s in range(3):
        path = _write(tmp_path / f"v{s}.mp4", frames(s, 12))
        rows.append(
            {
                "video_id": f"v{s}",
                "path": str(path),
                "fps": 30.0,
                "n_frames": 12,
                "source_fps": 30.0,
                "target_fps": "",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "videos.csv", index=False)
    args = [
        "--videos",
        str(tmp_path / "videos.csv"),
        "--shard",
        "0",
        "--shards",
        "1",
        "--out",
        str(tmp_path / "faces.h5"),
        "--params",
        '{"min_face_size": 30, "landmarks": "none"}',
    ]
    real, seen = faces.detect_video, []

    def crash_on_second(detector, path, *rest, **options):
        seen.append(path)
        if len(seen) == 2:
            raise RuntimeError("job killed")
        return real(detector, path, *rest, **options)

    monkeypatch.setattr(faces, "detect_video", crash_on_second)
    with pytest.raises(RuntimeError):
        faces.main(args)
    assert not (tmp_path / "faces.h5").exists()
    seen.clear()
    monkeypatch.setattr(
        faces, "detect_video", lambda d, p, *r, **o: seen.append(p) or real(d, p, *r, **o)
    )
    faces.main(args)
    assert seen == [str(tmp_path / "v1.mp4"), str(tmp_path / "v2.mp4")]  # v0 was finished
    with h5py.File(tmp_path / "faces.h5") as f:
        assert list(f) == ["v0", "v1", "v2"] and f["v0"]["valid"][:].all()


def test_landmarks_between_dlib_runs_are_interpolated(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, frames(2, 25))
    common = {"detect_every": 5, "min_face_size": 30, "smooth": 0}
    every = detect_video(Detector({**common, "landmark_every": 1}), str(path), 25)
    second = detect_video(Detector({**common, "landmark_every": 2}), str(path), 25)
    a, b = every["landmarks68"], second["landmarks68"]
    ran = [t for t in range(25) if t % 2 == 0 or second["detected"][t]]
    assert np.array_equal(a[ran], b[ran])  # dlib ran there, from the same boxes
    between = [t for t in range(1, 24) if t not in ran]
    assert between
    for t in between:
        np.testing.assert_allclose(b[t], (a[t - 1] + a[t + 1]) / 2, atol=1e-3)
    iod = np.linalg.norm(a[:, 36:42].mean(1) - a[:, 42:48].mean(1), axis=1)
    error = np.linalg.norm(b - a, axis=2).mean(1) / iod
    assert error.max() < 0.05


def test_a_face_is_followed_from_its_previous_box(detector):
    frame = frames(0, 1)[0]
    (face,) = detector.detect_full(frame)[:1]
    size = face.box[2] - face.box[0]
    moved = Face(face.box + np.array([0.1, 0.05, 0.1, 0.05]) * size, face.score, face.landmarks)
    followed = detector.follow(frame, moved)
    assert followed is not None and followed.score >= 0.9
    assert iou(face.box, followed.box[None])[0] > 0.8
    assert np.abs(followed.landmarks - face.landmarks).max() < 0.1 * size
    assert detector.follow(np.zeros_like(frame), moved) is None  # no face there: not followed
