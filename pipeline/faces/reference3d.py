"""Reference geometry of the face: the 5-point alignment template and a generic 3D face.

`TEMPLATE_112` (ArcFace's canonical 5 points of a 112×112 crop) is what
`frontalize.method: similarity` aligns to; the rest is the 3D reference face of
`frontalize.method: hassner`, authored in this file. Both live here, below the stages, because
the face stage (crops taken whole) and the frontalize stage both place points on them.

Source and licence: everything here is made by this project (MIT, like the rest of the code);
nothing is downloaded or copied from a face model with other terms.

- `FRONTAL_68`: the 68 points of the iBUG/dlib mark-up on a frontal face, in the coordinates of
  the 112×112 ArcFace crop that `frontalize.method: similarity` produces. They were measured by
  running dlib's 68-point predictor on the two public-domain portraits of the demo data
  (NASA's astronaut Eileen Collins, Grace Hopper) aligned with MTCNN's 5 points, averaged, and
  made left-right symmetric about x = 56 (largest asymmetry before: 2.4 px).
- `depth(x, y)`: the surface, a smooth analytic head in the same coordinates: an ellipsoid
  (cheeks, forehead, chin) plus a nose ridge rising to the tip, eye sockets and a slightly
  forward mouth; depth is in the same units as x and y (the eye centres are 36 units apart,
  ≈ 63 mm, so one unit ≈ 1.75 mm; the nose tip stands 26 units (≈ 45 mm) in front of the
  outer eye corners). Outside the head the surface is a flat plane behind it.

Coordinates are x right, y down, depth toward the viewer (the frontal image is the
orthographic projection onto x, y).
"""

from __future__ import annotations

import numpy as np

# ArcFace's canonical 5-point template for a 112×112 crop (x, y).
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# fmt: off
FRONTAL_68 = np.array([
    (17.3, 57.0), (18.5, 67.0), (19.8, 76.5), (21.8, 86.2), (25.0, 95.5), (30.0, 103.7),
    (37.7, 110.1), (46.0, 115.0), (56.0, 116.3), (66.0, 115.0), (74.3, 110.1), (82.0, 103.7),
    (87.0, 95.5), (90.2, 86.2), (92.2, 76.5), (93.5, 67.0), (94.7, 57.0), (23.0, 49.8),
    (27.1, 43.9), (33.8, 42.1), (40.9, 42.5), (47.4, 45.0), (64.6, 45.0), (71.1, 42.5),
    (78.2, 42.1), (84.9, 43.9), (89.0, 49.8), (56.0, 52.9), (56.0, 60.4), (56.0, 67.2),
    (56.0, 74.3), (47.5, 77.9), (51.6, 79.2), (56.0, 80.2), (60.4, 79.2), (64.5, 77.9),
    (31.6, 54.3), (35.5, 51.1), (40.6, 51.1), (45.0, 55.3), (40.2, 55.7), (35.3, 55.7),
    (67.0, 55.3), (71.4, 51.1), (76.5, 51.1), (80.4, 54.3), (76.7, 55.7), (71.8, 55.7),
    (39.2, 88.5), (45.2, 87.1), (51.4, 86.7), (56.0, 87.9), (60.6, 86.7), (66.8, 87.1),
    (72.8, 88.5), (67.0, 94.2), (60.8, 96.8), (56.0, 97.6), (51.2, 96.8), (45.0, 94.2),
    (41.5, 89.0), (51.4, 89.6), (56.0, 90.2), (60.6, 89.6), (70.5, 89.0), (60.6, 92.7),
    (56.0, 93.3), (51.4, 92.7),
], dtype=np.float64)

# Index of each point's left-right mirror in the 68-point mark-up.
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)
# fmt: on
JAW = np.arange(17)  # contour points: they slide along the silhouette when the head turns
INNER = np.arange(17, 68)  # brows, nose, eyes, mouth: fixed on the face
CENTER = np.array([56.0, 76.0])  # centre of the head ellipse in the frontal crop
HEAD = np.array([43.0, 60.0, 34.0])  # its semi-axes: half width, half height, depth
EYES = (FRONTAL_68[36:42].mean(0), FRONTAL_68[42:48].mean(0))


def _bump(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the reference surface toward the viewer at frontal-crop points (x, y)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    u = (x - CENTER[0]) / HEAD[0]
    v = (y - CENTER[1]) / HEAD[1]
    head = HEAD[2] * np.sqrt(np.clip(1.0 - u**2 - v**2, 0.0, None))
    # nose: a ridge from the bridge (y 50) to the tip (y 74), then the columella down to y 80
    along = np.clip((y - 50.0) / (74.3 - 50.0), 0.0, 1.0)
    ridge = (3.0 + 13.0 * along**1.5) * np.exp(-0.5 * ((x - 56.0) / (4.0 + 5.0 * along)) ** 2)
    ridge *= np.where(y < 74.3, 1.0, np.exp(-0.5 * ((y - 74.3) / 4.0) ** 2))
    ridge *= 1.0 / (1.0 + np.exp(-(y - 47.0)))  # fades out above the bridge
    sockets = sum(_bump(x, y, ex, ey, 7.0, 5.0) for ex, ey in EYES)
    mouth = _bump(x, y, 56.0, 91.0, 12.0, 6.0)
    inside = (u**2 + v**2) < 1.0
    return head + inside * (ridge - 3.0 * sockets + 2.0 * mouth)


def landmarks_3d() -> np.ndarray:
    """The 68 reference points in 3D (68, 3): frontal x, y and the surface depth there."""
    return np.column_stack([FRONTAL_68, depth(FRONTAL_68[:, 0], FRONTAL_68[:, 1])])


def dense_surface(size: int) -> np.ndarray:
    """The surface point behind every pixel centre of a size × size frontal crop: (size, size, 3)."""
    step = 112.0 / size
    coords = (np.arange(size) + 0.5) * step
    x, y = np.meshgrid(coords, coords)
    return np.stack([x, y, depth(x, y)], axis=-1)


def head_mask(size: int) -> np.ndarray:
    """Pixels of a size × size frontal crop that lie on the head ellipse, (size, size) bool."""
    surface = dense_surface(size)
    u = (surface[..., 0] - CENTER[0]) / HEAD[0]
    v = (surface[..., 1] - CENTER[1]) / HEAD[1]
    return u**2 + v**2 < 1.0
