"""Warps and head pose for the frontalize stage: the 5-point similarity warp (`align_frame`)
and Hassner-style 3D frontalization against the generic reference face (`Frontalizer`), which
also gives head pose, the visible fraction and the landmarks undone of pose. Frames may be RGB
arrays or undecoded `LazyFrame`s, of which only the part a crop samples is converted.
"""

from __future__ import annotations

import numpy as np

from pipeline import reference3d as ref
from pipeline.common import VideoError
from pipeline.reference3d import CENTER, INNER, TEMPLATE_112

COARSE = 32  # grid of the visibility map (pose, quality, soft symmetry)
RIGID = np.r_[np.arange(27, 36), [36, 39, 42, 45]]  # nose, eye corners: still in any expression


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2, 3) mapping points src (N, 2) onto dst (N, 2)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def source_region(frame, xy: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The RGB pixels of `frame` (an RGB array, or a LazyFrame: only that part is converted)
    that points `xy` (..., 2) sample, with a 2-pixel margin: (array, left, top). Sampling it
    with BORDER_REPLICATE gives what sampling the whole frame does."""
    if isinstance(frame, np.ndarray):
        return frame, 0, 0
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(1)]
    if not len(xy):
        return frame.rgb(), 0, 0
    (x0, y0), (x1, y1) = xy.min(0) - 2, xy.max(0) + 3
    return frame.region(x0, y0, x1, y1)


def align_frame(frame, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Similarity-warp one frame (an RGB array (H, W, 3) or a LazyFrame) to a (size, size, 3)
    crop; return it and the head's roll (degrees, clockwise on screen), which the warp removes.
    """
    import cv2

    matrix = umeyama(landmarks, TEMPLATE_112 * (size / 112.0))
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    image, left, top = source_region(frame, corners @ inverse[:, :2].T + inverse[:, 2])
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([left, top], np.float64)
    crop = cv2.warpAffine(
        image, shifted, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    roll = -float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return crop, roll


class Frontalizer:
    """Hassner-style frontalization against the generic 3D face of `pipeline.reference3d`.

    Per frame: a camera (rotation, translation; focal length 1.2 × the larger frame side,
    principal point at the centre) is fitted with `cv2.solvePnP` to the 51 inner landmarks
    (brows, nose, eyes, mouth; the jaw contour slides along the silhouette as the head turns and
    is left out) against the same points on the reference. The reference surface behind every
    pixel of the frontal crop is projected into the frame with that camera and the frame is
    sampled there. A z-buffer over the projected surface tells which crop pixels were visible;
    with `symmetry: soft` a pixel seen less well than its mirror is blended toward the mirror
    in proportion (Hassner et al., CVPR 2015, soft symmetry).
    """

    def __init__(self, size: int, symmetry: str = "none"):
        if symmetry not in ("none", "soft"):
            raise ValueError(f"unknown frontalize.symmetry {symmetry!r}; known: none, soft")
        self.size = size
        self.symmetry = symmetry
        self.all_points = to_object(ref.landmarks_3d())
        self.points = self.all_points[INNER]
        self.surface = to_object(ref.dense_surface(size).reshape(-1, 3))
        self.mask = ref.head_mask(size)
        self.coarse = to_object(ref.dense_surface(COARSE).reshape(-1, 3))
        self.coarse_mask = ref.head_mask(COARSE)
        self.guess: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def camera(shape: tuple[int, ...]) -> np.ndarray:
        height, width = shape[:2]
        focal = 1.2 * max(height, width)
        return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)

    def reset(self) -> None:
        """Forget the previous frame's pose (a new video starts)."""
        self.guess = None

    def fit(self, landmarks68: np.ndarray, shape: tuple[int, ...]):
        """(rvec, tvec, camera matrix) placing the reference on 68 frame landmarks: refined from
        the previous fit's pose (frames of one video, in order) when there is one, else EPnP then
        refined."""
        import cv2

        image = np.ascontiguousarray(landmarks68[INNER], np.float64)
        matrix = self.camera(shape)
        ok = False
        if self.guess is not None:  # the previous frame's pose: one refinement, not two fits
            rvec, tvec = (a.copy() for a in self.guess)
            ok, rvec, tvec = cv2.solvePnP(
                self.points, image, matrix, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
            )
            ok = ok and tvec[2, 0] > 0
        if not ok:
            ok, rvec, tvec = cv2.solvePnP(self.points, image, matrix, None, flags=cv2.SOLVEPNP_EPNP)
            if ok:
                ok, rvec, tvec = cv2.solvePnP(
                    self.points, image, matrix, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
                )
        if not ok or tvec[2, 0] <= 0:
            self.guess = None
            raise VideoError("camera fit failed")
        self.guess = (rvec, tvec)
        return rvec, tvec, matrix

    def project(self, landmarks68: np.ndarray, shape: tuple[int, ...]):
        """Fit the camera; return (rotation, translation, camera matrix, visibility map on a
        COARSE × COARSE grid of the crop, pose: yaw, pitch, roll, the visible fraction and
        `points`, the landmarks undone of the pose (see `frontal_points`))."""
        import cv2

        rvec, tvec, matrix = self.fit(landmarks68, shape)
        rot, _ = cv2.Rodrigues(rvec)
        seen = self.visibility(rot, tvec, matrix)
        info = {
            **pose_angles(rot, tvec.ravel()),
            "visible": float(seen[self.coarse_mask].mean()),
            "points": self.frontal_points(landmarks68, rvec, tvec, matrix),
        }
        return rot, tvec, matrix, seen, info

    def pose(self, landmarks68: np.ndarray, shape: tuple[int, ...]) -> dict:
        """Yaw, pitch, roll (degrees), visible fraction and frontal `points`, without warping."""
        return self.project(landmarks68, shape)[-1]

    def frontal_points(self, landmarks68, rvec, tvec, matrix) -> np.ndarray:
        """(68, 2) frame landmarks → where they lie on a frontal face, in reference coordinates.

        The pose is refined on the rigid points only (nose, eye corners: what an expression
        does not move), so that raised brows or an open mouth are not taken for a nod. Each
        landmark is then moved back along its camera ray to the depth its reference point has
        under that pose and rotated back to frontal: the head's rotation, position and scale
        are gone, what the face does stays, up to the depth the reference cannot know.
        """
        import cv2

        image = np.ascontiguousarray(np.asarray(landmarks68, np.float64)[RIGID])
        guess = (rvec.copy(), tvec.copy(), True, cv2.SOLVEPNP_ITERATIVE)
        ok, r, t = cv2.solvePnP(self.all_points[RIGID], image, matrix, None, *guess)
        if ok and t[2, 0] > 0:  # else keep the fit on all inner points
            rvec, tvec = r, t
        rot, _ = cv2.Rodrigues(rvec)
        depth = (self.all_points @ rot.T + tvec.reshape(1, 3))[:, 2]
        rays = np.column_stack([np.asarray(landmarks68, np.float64), np.ones(len(depth))])
        cam = np.linalg.solve(matrix, rays.T).T * depth[:, None]
        back = (cam - tvec.reshape(1, 3)) @ rot  # rot.T applied to each row
        return (back[:, :2] + CENTER).astype(np.float32)

    def warp(self, frame, landmarks68: np.ndarray) -> tuple[np.ndarray, dict]:
        """Frontal (size, size, 3) crop of one frame (RGB array or LazyFrame); and its pose and
        visible fraction."""
        import cv2

        rot, tvec, matrix, seen, info = self.project(landmarks68, frame.shape)
        xy = project_points(self.surface, rot, tvec, matrix).reshape(self.size, self.size, 2)
        image, left, top = source_region(frame, xy)
        crop = cv2.remap(
            image,
            xy[..., 0] - np.float32(left),
            xy[..., 1] - np.float32(top),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if self.symmetry == "soft":
            seen = cv2.resize(seen, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            crop = soft_symmetry(crop, seen, self.mask)
        return crop, info

    def visibility(self, rot: np.ndarray, tvec: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(COARSE, COARSE) float in [0, 1]: how clearly each part of the crop's surface is seen.

        The surface, sampled on a COARSE grid, is projected and binned on an image grid one
        sample wide; a point is seen when no point of its bin is nearer to the camera by more
        than 6 units (≈ 10 mm, so neighbours on a slope do not hide each other). A frontal face
        is ~99 % visible, one turned 40° ~93 %. The map is blurred a little so symmetry blends
        smoothly.
        """
        import cv2

        cam = self.coarse @ rot.T + tvec.reshape(1, 3)
        xy = project_points(self.coarse, rot, tvec, matrix)
        cell = max(1.0, (112.0 / COARSE) * matrix[0, 0] / tvec[2, 0])
        ij = np.floor(xy / cell).astype(np.int64)
        ij -= ij.min(0)
        key = ij[:, 1] * (ij[:, 0].max() + 1) + ij[:, 0]
        nearest = np.full(key.max() + 1, np.inf)
        np.minimum.at(nearest, key, cam[:, 2])
        seen = (cam[:, 2] <= nearest[key] + 6.0).astype(np.float32).reshape(COARSE, COARSE)
        return cv2.GaussianBlur(seen, (3, 3), 0)


def project_points(points, rot, tvec, matrix) -> np.ndarray:
    """Pinhole projection of object points (N, 3) → image points (N, 2) float32."""
    proj = (points @ rot.T + tvec.reshape(1, 3)) @ matrix.T
    return (proj[:, :2] / proj[:, 2:3]).astype(np.float32)


def to_object(points: np.ndarray) -> np.ndarray:
    """Reference coordinates (x right, y down, depth toward the viewer) → a right-handed object
    frame centred on the head, z away from the viewer (OpenCV's camera convention)."""
    out = np.array(points, np.float64, copy=True)
    out[:, 0] -= CENTER[0]
    out[:, 1] -= CENTER[1]
    out[:, 2] = -out[:, 2]
    return out


def pose_angles(rot: np.ndarray, position: np.ndarray | None = None) -> dict[str, float]:
    """Yaw, pitch, roll in degrees of a head rotation (object → camera).

    Angles are relative to the line of sight to the head at `position` (camera coordinates),
    so a face looking straight at the camera is frontal wherever it is in the frame.
    yaw > 0: the face turns toward the image's right; pitch > 0: it looks up; roll > 0: it
    tilts clockwise on screen. All 0 for a frontal, upright face.
    """
    if position is not None:
        import cv2

        ray = np.asarray(position, np.float64) / np.linalg.norm(position)
        axis = np.cross(ray, [0.0, 0.0, 1.0])  # rotate the ray onto the optical axis
        angle = np.arccos(np.clip(ray[2], -1.0, 1.0))
        norm = np.linalg.norm(axis)
        if norm > 1e-12:
            rot = cv2.Rodrigues(axis / norm * angle)[0] @ rot
    forward = -rot[:, 2]  # the nose's direction, toward the viewer when frontal
    right = rot[:, 0]
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(-forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(right[1], right[0]))
    return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}


def soft_symmetry(crop: np.ndarray, seen: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend each head pixel seen less clearly than its mirror toward the mirrored crop."""
    mirror_seen = seen[:, ::-1]
    weight = np.where(seen >= mirror_seen, 1.0, seen / np.maximum(mirror_seen, 1e-6))
    weight = np.where(mask, weight, 1.0)[..., None]
    blended = weight * crop + (1.0 - weight) * crop[:, ::-1]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
