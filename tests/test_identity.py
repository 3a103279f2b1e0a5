"""The same person across cuts: dlib's face recognition ResNet in the tracker."""

from __future__ import annotations

import numpy as np


def test_a_cut_to_another_face_and_back_keeps_the_subject(tmp_path):
    from pipeline.datasets import demo
    from pipeline.encode import write_video
    from pipeline.faces.detector import Detector
    from pipeline.faces.stage import detect_video

    rng = np.random.default_rng(0)
    a = demo.render_subject(0, "happiness", 20, (320, 240), rng)
    b = demo.render_subject(1, "anger", 20, (320, 240), rng)  # the other face, same place
    c = demo.render_subject(0, "surprise", 20, (320, 240), rng)
    video = tmp_path / "cut.mp4"
    write_video(video, [*a, *b, *c], fps=25)
    plain = detect_video(Detector({}), str(video), 60, 25.0, {})
    assert plain["valid"].all()  # without identities the other face is taken as the subject
    found = detect_video(Detector({"identity": "dlib"}), str(video), 60, 25.0, {})
    valid, track = found["valid"], found["track"]
    assert valid[:20].all() and not valid[20:40].any() and valid[40:].all()
    assert (track[20:40] == -1).all()
    others = found["others"]
    assert others.shape == (20, 8)  # frame, track, box, score, person
    assert others[:, 0].astype(int).tolist() == list(range(20, 40))  # the cut, to the frame
    assert set(others[:, -1].astype(int)) == {1}  # one other person; the subject is 0


def two_people(tmp_path, n=12):
    """A video of a large face in the middle-left and a smaller one at the right edge, and a
    photo of the smaller one's person (another expression, another size)."""
    from PIL import Image

    from pipeline.datasets import demo
    from pipeline.encode import write_video

    rng = np.random.default_rng(1)
    big = demo.render_subject(0, "happiness", n, (240, 240), rng)
    small = demo.render_subject(1, "sadness", n, (150, 150), rng)
    frames = []
    for a, b in zip(big, small, strict=True):
        canvas = np.full((240, 420, 3), 90, np.uint8)
        canvas[:, 40:280] = a
        canvas[90:240, 270:420] = b
        frames.append(canvas)
    video = tmp_path / "two.mp4"
    write_video(video, frames, fps=25)
    photo = tmp_path / "person1.png"
    Image.fromarray(demo.render_subject(1, "surprise", 1, (200, 200), rng)[0]).save(photo)
    return video, photo


def test_a_reference_photo_makes_the_smaller_face_the_subject(tmp_path):
    import pandas as pd

    from pipeline.faces.detector import Detector
    from pipeline.faces.stage import detect_shard

    video, photo = two_people(tmp_path)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (120, 120), (128, 128, 128)).save(blank)
    row = {"path": str(video), "n_frames": 12, "fps": 25.0, "subject": "s", "label": "x"}
    videos = pd.DataFrame(
        [
            {**row, "video_id": "plain", "reference": None},
            {**row, "video_id": "followed", "reference": str(photo)},
            {**row, "video_id": "faceless", "reference": str(blank)},
        ]
    )
    out = tmp_path / "shard.h5"
    _, _, skipped = detect_shard(videos, str(out), {}, "skip", Detector({}))
    assert list(skipped) == ["faceless"] and str(blank) in skipped["faceless"]
    assert "no face found in the reference photo" in skipped["faceless"]
    import h5py

    with h5py.File(out) as f:
        plain, followed = f["plain"], f["followed"]
        assert plain["valid"][:].all() and followed["valid"][:].all()
        centre = lambda g: (g["boxes"][:, 0] + g["boxes"][:, 2]) / 2  # noqa: E731
        assert (centre(plain) < 280).all()  # by size and centrality: the big face
        assert (centre(followed) > 270).all()  # by the photo: the small one
        others = followed["others"][:]  # the frames where every face was looked for
        assert len(others) and set(others[:, -1].astype(int)) == {1}  # the big face: person 1
        from pipeline.export import persons

        columns = persons(followed, followed["valid"][:].astype(bool))
        assert columns["person"].tolist() == [0] * 12
        seen = columns["other_persons"]
        assert set(seen) <= {"1", None} and (seen == "1").sum() == len(others)
        assert set(persons(plain, plain["valid"][:].astype(bool))["person"]) == {None}


def test_the_live_face_stage_follows_the_reference_too(tmp_path):
    from pipeline.faces.detector import Detector
    from pipeline.predict.online import OnlineFaces
    from pipeline.settings import BackboneSpec, Preprocessing
    from pipeline.video import iter_lazy

    video, photo = two_people(tmp_path)
    pre = Preprocessing({}, {}, {}, {}, BackboneSpec("hog"))
    online = OnlineFaces(pre, Detector({}), str(photo))
    boxes = [online(frame)["face"].box for frame in iter_lazy(str(video))]
    assert len(boxes) == 12 and all((b[0] + b[2]) / 2 > 270 for b in boxes)
    plain = OnlineFaces(pre, Detector({}))
    assert all((plain(f)["face"].box[[0, 2]].mean()) < 280 for f in iter_lazy(str(video)))
