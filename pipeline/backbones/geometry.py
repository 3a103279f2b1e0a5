"""`geometry`: the shape of the face from its 68 landmarks, undone of head pose.

What the face *does* (brows raised, eyes widened, lip corners pulled) with little of what the
person *looks like*: it reads the `points` the frontalize stage stores (the 68 dlib landmarks
carried back to a frontal pose on the generic reference face of `pipeline.faces.reference3d`), aligns
them once more to the reference's rigid points (eye corners, nose bridge and base; least-squares
similarity) so that residual scale and position go, and measures, in units of the distance
between the eyes:

- `dx*`, `dy*`: every point's displacement from the reference face (2 × 68, or the points of
  the chosen `region`);
- brow height above the eye (10 points), brow gap, brow slopes; eye openness (per eye, height
  over width); mouth width, outer and inner opening, lip-corner height and angle against the
  lip centre, upper-lip to nose and chin to nose distances;
- head pose is *not* a feature (it is what was taken out).

`region: upper` keeps brows, eyes and nose (what speech does not move); `lower` keeps mouth and
jaw; `whole` (default) all of them. No weights, nothing fitted: the same numbers for every fold.
Needs 68-point landmarks (`face.landmarks: dlib`) on uncropped video; frames whose pose fit
failed get the displacement 0 (the reference face).
"""

from __future__ import annotations

import numpy as np

from pipeline.catalog import VECTORS
from pipeline.common import ConfigError
from pipeline.faces.reference3d import FRONTAL_68
from pipeline.frontalize import RIGID, umeyama

REGIONS = {
    "upper": np.arange(17, 48),  # brows, nose, eyes
    "lower": np.r_[np.arange(0, 17), np.arange(48, 68)],  # jaw, mouth
    "whole": np.arange(68),
}
EYE_DISTANCE = float(np.linalg.norm(FRONTAL_68[36:42].mean(0) - FRONTAL_68[42:48].mean(0)))


def align_rigid(points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) point sets, each moved by the least-squares similarity (`umeyama`) that takes
    its rigid points onto the reference's."""
    out = np.empty_like(points)
    for i, p in enumerate(points):
        matrix = umeyama(p[RIGID], FRONTAL_68[RIGID])
        out[i] = p @ matrix[:, :2].T + matrix[:, 2]
    return out


def measures(p: np.ndarray) -> dict[str, np.ndarray]:
    """Named distances and angles of aligned (N, 68, 2) points, in eye distances / radians."""
    x, y = p[..., 0], p[..., 1]

    def dist(i, j):
        return np.linalg.norm(p[:, i] - p[:, j], axis=-1) / EYE_DISTANCE

    eye_y = y[:, 36:48].mean(1)
    lip_centre = (p[:, 51] + p[:, 57]) / 2
    out = {f"brow{i}": (eye_y - y[:, i]) / EYE_DISTANCE for i in range(17, 27)}
    out["brow_gap"] = dist(21, 22)
    out["brow_slope_l"] = np.arctan2(y[:, 17] - y[:, 21], x[:, 21] - x[:, 17])
    out["brow_slope_r"] = np.arctan2(y[:, 26] - y[:, 22], x[:, 26] - x[:, 22])
    out["eye_open_l"] = (dist(37, 41) + dist(38, 40)) / (2 * dist(36, 39))
    out["eye_open_r"] = (dist(43, 47) + dist(44, 46)) / (2 * dist(42, 45))
    out["mouth_width"] = dist(48, 54)
    out["mouth_open"] = dist(51, 57)
    out["lips_apart"] = dist(62, 66)
    out["corner_l"] = (lip_centre[:, 1] - y[:, 48]) / EYE_DISTANCE
    out["corner_r"] = (lip_centre[:, 1] - y[:, 54]) / EYE_DISTANCE
    out["corner_angle_l"] = np.arctan2(y[:, 51] - y[:, 48], x[:, 51] - x[:, 48])
    out["corner_angle_r"] = np.arctan2(y[:, 51] - y[:, 54], x[:, 54] - x[:, 51])
    out["upper_lip"] = (y[:, 51] - y[:, 33]) / EYE_DISTANCE
    out["chin"] = (y[:, 8] - y[:, 33]) / EYE_DISTANCE
    return out


UPPER_MEASURES = ("brow", "eye_")  # name prefixes of the measures of the upper face
LOWER_MEASURES = ("mouth", "lips", "corner", "upper_lip", "chin")


class Geometry:
    """Pose-normalised landmark shape per frame (see the module docstring).

    Args:
        region: whole, upper (brows, eyes, nose) or lower (mouth, jaw).
    """

    kind = VECTORS
    reads = "points"  # the aligned dataset this backbone takes instead of the face crops

    def __init__(self, *, region: str = "whole"):
        if region not in REGIONS:
            raise ConfigError(
                f"backbones.geometry.region: unknown region {region!r}; known: {', '.join(REGIONS)}"
            )
        self.region = region
        self.idx = REGIONS[region]
        names = list(measures(FRONTAL_68[None]))
        prefixes = {"upper": UPPER_MEASURES, "lower": LOWER_MEASURES}.get(region)
        self.keep = [n for n in names if prefixes is None or n.startswith(prefixes)]
        self.columns = [f"dx{i}" for i in self.idx] + [f"dy{i}" for i in self.idx] + list(self.keep)
        self.dim = len(self.columns)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """(N, 68, 2) frontal points → (N, dim) float32."""
        points = np.asarray(points, np.float64)
        if points.ndim != 3 or points.shape[1:] != (68, 2):
            raise ValueError(f"geometry takes (N, 68, 2) points, got {points.shape}")
        missing = ~np.isfinite(points).all((1, 2))
        points = np.where(missing[:, None, None], FRONTAL_68, points)
        aligned = align_rigid(points)
        shift = (aligned - FRONTAL_68)[:, self.idx] / EYE_DISTANCE
        named = measures(aligned)
        parts = [shift[..., 0], shift[..., 1], *(named[n][:, None] for n in self.keep)]
        return np.concatenate(parts, 1).astype(np.float32)

    def describe(self) -> dict:
        return {"dim": self.dim, "input": [68, 2], "columns": self.columns, "region": self.region}
