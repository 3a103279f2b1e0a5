"""68-point facial landmarks (iBUG 300-W mark-up) from dlib's shape predictor.

The predictor file `shape_predictor_68_face_landmarks.dat` ships inside the
`face-recognition-models` package. That package cannot be imported (its `__init__` needs the
removed `pkg_resources`), so the file is located through the package's installed metadata;
`face.landmark_model` may point to another copy. Nothing is downloaded.

dlib's predictor is initialised from a face rectangle like the one dlib's own detector gives;
it is derived from the MTCNN box (measured on the demo portraits: a square 1.045 box widths on
a side, centred 0.035 box widths below the box centre).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.common import packaged_file

PACKAGE = "face-recognition-models"
MODEL_FILE = "face_recognition_models/models/shape_predictor_68_face_landmarks.dat"
RECT_SCALE = 1.045
RECT_SHIFT = 0.035


def predictor_path(configured: str | None = None) -> Path:
    """The 68-point model file: `configured` if given, else the one in face-recognition-models."""
    return packaged_file(configured, "face.landmark_model", PACKAGE, MODEL_FILE, "0.3.0")


def rect_for(box: np.ndarray) -> tuple[int, int, int, int]:
    """dlib-style face rectangle (left, top, right, bottom) for an MTCNN box (x1, y1, x2, y2)."""
    width = float(box[2] - box[0])
    cx = float(box[0] + box[2]) / 2
    cy = float(box[1] + box[3]) / 2 + RECT_SHIFT * width
    half = RECT_SCALE * width / 2
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


class Landmarker:
    """dlib's 68-point shape predictor, started from an MTCNN box."""

    def __init__(self, model: str | None = None):
        import dlib

        self._dlib = dlib
        self.path = predictor_path(model)
        self._predict = dlib.shape_predictor(str(self.path))

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 (x, y) points (68, 2) float32 for the face in `box` of a uint8 frame, grey (H, W)
        (faster: dlib reads intensities) or RGB (H, W, 3)."""
        left, top, right, bottom = rect_for(box)
        shape = self._predict(
            np.ascontiguousarray(image), self._dlib.rectangle(left, top, right, bottom)
        )
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def five_points(points68: np.ndarray) -> np.ndarray:
    """MTCNN's five points (eyes, nose tip, mouth corners; image left first) from 68 iBUG
    points (..., 68, 2): the centres of the eye contours, the nose tip (30), the mouth corners
    (48, 54). (..., 5, 2) float32."""
    p = np.asarray(points68, np.float32)
    parts = [p[..., 36:42, :].mean(-2), p[..., 42:48, :].mean(-2), p[..., 30, :]]
    return np.stack([*parts, p[..., 48, :], p[..., 54, :]], axis=-2)


def smooth(points: np.ndarray, valid: np.ndarray, sigma: float, runs: np.ndarray | None = None):
    """Gaussian smoothing of (T, K, 2) points over time, within runs of valid frames.

    `runs` (T,) optionally splits runs further (e.g. a track id: never smooth across a change
    of person). sigma is in frames; 0 returns a copy.
    """
    from scipy.ndimage import gaussian_filter1d

    out = np.array(points, np.float32, copy=True)
    if sigma <= 0:
        return out
    key = np.where(valid, 0 if runs is None else runs, -1)
    breaks = np.flatnonzero(np.diff(key) != 0) + 1
    for run in np.split(np.arange(len(valid)), breaks):
        if len(run) > 1 and valid[run[0]]:
            out[run] = gaussian_filter1d(out[run], sigma, axis=0, mode="nearest")
    return out
