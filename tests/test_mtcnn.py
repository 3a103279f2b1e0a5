"""`pipeline.faces.mtcnn.Cascade` gives what facenet-pytorch's MTCNN.detect gives, from the same
networks and weights, on whole frames, small regions and frames without a face."""

import cv2
import numpy as np
import pytest
from facenet_pytorch import MTCNN

from pipeline.datasets import demo
from pipeline.faces.mtcnn import Cascade, nms

THRESHOLDS = (0.6, 0.7, 0.7)


@pytest.fixture(scope="module")
def cascade():
    return Cascade(THRESHOLDS)


def images():
    rng = np.random.default_rng(5)
    two = demo.render_subject(0, "surprise", 1, (640, 480), rng)[0]
    two[60:300, 380:620] = cv2.resize(
        demo.render_subject(1, "anger", 1, (320, 240), rng)[0][:, 40:280], (240, 240)
    )
    small = demo.render_subject(1, "happiness", 1, (320, 240), rng)[0]
    near = cv2.resize(small[20:220, 60:260], (154, 154), interpolation=cv2.INTER_AREA)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return {"two faces": (two, 40), "small": (small, 20), "near": (near, 48), "noise": (noise, 20)}


@pytest.mark.parametrize("name", ["two faces", "small", "near", "noise"])
def test_cascade_matches_facenet_mtcnn(cascade, name):
    image, min_face = images()[name]
    boxes, scores, points = MTCNN(
        keep_all=True, min_face_size=min_face, thresholds=THRESHOLDS
    ).detect(image, landmarks=True)
    got_boxes, got_scores, got_points = cascade.detect(image, min_face)
    if boxes is None:
        assert len(got_boxes) == 0 and name == "noise"
        return
    assert len(got_boxes) == len(boxes) >= (2 if name == "two faces" else 1)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")  # facenet: largest first
    np.testing.assert_allclose(got_boxes, np.asarray(boxes, np.float32)[order], atol=0.01)
    np.testing.assert_allclose(got_scores, np.asarray(scores, np.float32)[order], atol=1e-4)
    np.testing.assert_allclose(got_points, np.asarray(points, np.float32)[order], atol=0.01)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]  # box 0 overlaps box 1 by 0.68
    # overlap over the smaller box (+1 pixel sizes): boxes 0 and 1 cover most of box 3
    assert nms(boxes, scores, 0.5, minimum=True).tolist() == [3, 2]
