import numpy as np

from pipeline.frontalize import TEMPLATE_112, align_frame, fill_nearest, umeyama


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
