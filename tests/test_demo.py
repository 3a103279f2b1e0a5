import numpy as np
import pytest

from pipeline.datasets import demo


def apex_frame(emotion, subject=1, seed=7):
    return demo.render_subject(subject, emotion, 12, (160, 120), np.random.default_rng(seed))


def test_same_seed_same_frames():
    a, b = apex_frame("happiness"), apex_frame("happiness")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_videos_start_neutral_and_end_expressive():
    frames = apex_frame("surprise")
    neutral = apex_frame("sadness")
    # the first frame is (nearly) the same neutral face whatever the emotion
    assert np.abs(frames[0].astype(int) - neutral[0].astype(int)).mean() < 0.5
    assert np.abs(frames[-1].astype(int) - neutral[-1].astype(int)).mean() > 1.0


@pytest.mark.parametrize(
    "a,b", [("happiness", "sadness"), ("anger", "fear"), ("disgust", "surprise")]
)
def test_classes_differ_in_the_face_not_in_a_global_statistic(a, b):
    fa, fb = apex_frame(a)[-1].astype(float), apex_frame(b)[-1].astype(float)
    diff = np.abs(fa - fb).mean(-1)
    h, w = diff.shape
    # the face sits at the frame centre, its inter-ocular distance is 0.2 * height
    ys, xs = np.mgrid[0:h, 0:w]
    near_face = np.hypot(xs - w / 2, ys - h / 2) < 0.2 * h * 2.0
    assert diff[near_face].sum() > 0.97 * diff.sum()
    assert abs(fa.mean() - fb.mean()) < 2.0


def test_every_emotion_moves_some_control_point():
    face = demo.face_model(np.array(demo.PORTRAIT_LANDMARKS["astronaut"]))
    norms = {e: np.linalg.norm(demo.expression_vectors(face, e)) for e in demo.EMOTIONS}
    assert all(n > 0.1 * face.iod for n in norms.values())


def test_the_intensity_track_is_what_the_frames_are_rendered_with():
    track: list = []
    frames = demo.render_subject(
        1, "happiness", 12, (160, 120), np.random.default_rng(7), track=track
    )
    plain = apex_frame("happiness")  # asking for the track changes no frame
    assert all(np.array_equal(x, y) for x, y in zip(frames, plain, strict=True))
    (level,) = track
    assert level.shape == (12,) and level[0] == 0.0 and level[-1] > 0.9
    # how far each frame is from the neutral first frame grows with the intensity
    moved = [np.abs(f.astype(int) - frames[0].astype(int)).mean() for f in frames]
    assert np.corrcoef(level, moved)[0, 1] > 0.8  # head motion and light move pixels too


def test_the_demo_writes_an_annotation_file_per_video(tmp_path):
    import pandas as pd

    sheet = demo.generate(
        tmp_path,
        {
            "subjects": 2,
            "repetitions": 1,
            "min_frames": 8,
            "max_frames": 10,
            "width": 96,
            "height": 72,
        },  # fmt: skip
    )
    assert len(sheet) == 12 and sheet.annotation.str.startswith("annotations/").all()
    for row in sheet.itertuples():
        notes = pd.read_csv(tmp_path / row.annotation)
        assert list(notes.columns) == ["time", "intensity", "valence"]
        assert notes.intensity.between(0, 1).all()
        sign = np.sign(demo.VALENCE[row.label])
        assert (np.sign(notes.valence[notes.intensity > 0]) == sign).all()
