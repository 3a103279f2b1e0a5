"""The same person across cuts: dlib's face recognition ResNet in the tracker."""

from __future__ import annotations

import numpy as np


def test_a_cut_to_another_face_and_back_keeps_the_subject(tmp_path):
    from pipeline.datasets import demo
    from pipeline.detector import Detector
    from pipeline.faces import detect_video
    from pipeline.video import write_video

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
