"""Warps and head pose for the frontalize stage: the 5-point similarity warp (`align_frame`)
and Hassner-style 3D frontalization against the generic reference face (`Frontalizer`), which
also gives head pose, the visible fraction and the landmarks undone of pose. Frames may be RGB
arrays or undecoded `LazyFrame`s, of which only the part a crop samples is converted.
"""

from __future__ import annotations

import numpy as np

from pipeline.common import VideoError
from pipeline.faces import reference3d as ref
from pipeline.faces.reference3d import CENTER, INNER, TEMPLATE_112

COARSE = 32  # grid of the visibility map (pose, quality, soft symmetry)
RIGID = np.r_[np.arange(27, 36), [36, 39, 42, 45]]  # nose, eye corners: still in any expression


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2, 3) mapping points src (N, 2) onto dst (N, 2).

    Umeyama's solution, in the closed form it takes in 2D: a similarity is [[a, -b], [b, a]]
    plus a translation, and the centred points give a = Σ s·d / Σ|s|², b = Σ s×d / Σ|s|² (no
    SVD; ~6x faster, the same matrix to rounding). Coincident src points: scale 1, no turn.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = float((s * s).sum())
    if var > 0:
        a = float((s * d).sum()) / var
        b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / var
    else:
        a, b = 1.0, 0.0
    linear = np.array([[a, -b], [b, a]])
    matrix = np.empty((2, 3))
    matrix[:, :2] = linear
    matrix[:, 2] = mu_d - linear @ mu_s
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
    """Hassner-style frontalization against the generic 3D face of `pipeline.faces.reference3d`.

    Per frame: a camera (rotation, translation; focal length 1.2 × the larger frame side,
    principal point at the centre) is fitted with `cv2.solvePnP` to the rigid landmarks (nose,
    eye corners: raised brows or an open mouth are not taken for a nod) against the same
    points on the reference, starting from the previous frame's camera, or from EPnP on the 51
    inner landmarks (brows, nose, eyes, mouth; the jaw contour slides along the silhouette as
    the head turns and is left out) when there is none. The reference surface behind
    every pixel of the frontal crop is projected into the frame with that camera and the frame
    is sampled there. A z-buffer over the projected surface tells which crop pixels were
    visible; with `symmetry: soft` a pixel seen less well than its mirror is blended toward the
    mirror in proportion (Hassner et al., CVPR 2015, soft symmetry).

    Frames of one video come in blocks (`poses`): each camera is fitted from the previous
    frame's, the rest (visibility, angles, frontal points) is computed for the whole block at
    once.
    """

    def __init__(self, size: int, symmetry: str = "none"):
        if symmetry not in ("none", "soft"):
            raise ValueError(f"unknown frontalize.symmetry {symmetry!r}; known: none, soft")
        self.size = size
        self.symmetry = symmetry
        self.all_points = to_object(ref.landmarks_3d())
        self.points = self.all_points[INNER]
        self.rigid = self.all_points[RIGID]
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
        """(rvec, tvec, camera matrix) placing the reference on one frame's rigid landmarks
        (nose, eye corners: what an expression does not move) with cv2.solvePnP: refined from
        the previous fit's pose (frames of one video, in order) when there is one, else from
        EPnP on the 51 inner landmarks."""
        import cv2

        image = np.asarray(landmarks68, np.float64)
        matrix = self.camera(shape)
        if not np.isfinite(image[INNER]).all():  # solvePnP would keep its starting pose
            self.guess = None
            raise VideoError("camera fit failed: landmarks missing")
        rigid = np.ascontiguousarray(image[RIGID])
        ok = False
        if self.guess is not None:  # the previous frame's pose: one refinement, not two fits
            rvec, tvec = (a.copy() for a in self.guess)
            ok, rvec, tvec = cv2.solvePnP(
                self.rigid, rigid, matrix, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
            )
            ok = ok and tvec[2, 0] > 0
        if not ok:
            inner = np.ascontiguousarray(image[INNER])
            ok, rvec, tvec = cv2.solvePnP(self.points, inner, matrix, None, flags=cv2.SOLVEPNP_EPNP)
            if ok:
                ok, rvec, tvec = cv2.solvePnP(
                    self.rigid, rigid, matrix, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
                )
        if not ok or tvec[2, 0] <= 0 or not np.isfinite(tvec).all():
            self.guess = None
            raise VideoError("camera fit failed")
        self.guess = (rvec, tvec)
        return rvec, tvec, matrix

    def poses(
        self, landmarks68: np.ndarray, shape: tuple[int, ...], render: bool = False
    ) -> dict[str, np.ndarray]:
        """Camera and head pose of consecutive frames of one video from their (T, 68, 2)
        landmarks: `ok` (T,) the fit succeeded (else NaN below), `rot` (T, 3, 3) and `tvec`
        (T, 3) the reference's rotation and position, `matrix` the camera, `seen` (T, COARSE,
        COARSE) the visibility map, `yaw`, `pitch`, `roll`, `visible` (T,) and `points`
        (T, 68, 2), the landmarks undone of pose (see `frontal_points`).

        With `render`, also the camera to render a frontal crop with (`render_rot`,
        `render_tvec`, `render_seen`): the rigid fit refined on the 51 inner landmarks, which
        places the whole reference surface better on the face (the demo portraits turned by
        ±30°: landmark asymmetry of the crop 2.3-4.5 % of the interocular distance, against
        3.6-18 % with the rigid points' camera)."""
        import cv2

        lm = np.asarray(landmarks68, np.float64).reshape(-1, 68, 2)
        n = len(lm)
        matrix = self.camera(shape)
        rot = np.full((n, 3, 3), np.nan)
        tvec = np.full((n, 3), np.nan)
        view = (np.full((n, 3, 3), np.nan), np.full((n, 3), np.nan))
        ok = np.zeros(n, bool)
        for t in range(n):
            try:
                rvec, tv, _ = self.fit(lm[t], shape)
            except VideoError:
                continue
            ok[t] = True
            rot[t], tvec[t] = cv2.Rodrigues(rvec)[0], tv.ravel()
            if render:
                inner = np.ascontiguousarray(lm[t, INNER])
                guess = (rvec.copy(), tv.copy(), True, cv2.SOLVEPNP_ITERATIVE)
                done, r, tr = cv2.solvePnP(self.points, inner, matrix, None, *guess)
                if not (done and tr[2, 0] > 0):  # keep the rigid fit
                    r, tr = rvec, tv
                view[0][t], view[1][t] = cv2.Rodrigues(r)[0], tr.ravel()
        out = {
            "ok": ok,
            "rot": rot,
            "tvec": tvec,
            "matrix": matrix,
            "seen": np.full((n, COARSE, COARSE), np.nan, np.float32),
            "points": np.full((n, 68, 2), np.nan, np.float32),
            **{k: np.full(n, np.nan) for k in ("yaw", "pitch", "roll", "visible")},
        }
        if ok.any():
            seen = self.visibility(rot[ok], tvec[ok], matrix)
            out["seen"][ok] = seen
            out["visible"][ok] = seen[:, self.coarse_mask].mean(1)
            for key, value in pose_angles(rot[ok], tvec[ok]).items():
                out[key][ok] = value
            out["points"][ok] = self.frontal_points(lm[ok], rot[ok], tvec[ok], matrix)
        if render:
            out["render_rot"], out["render_tvec"] = view
            out["render_seen"] = np.full((n, COARSE, COARSE), np.nan, np.float32)
            if ok.any():
                out["render_seen"][ok] = self.visibility(view[0][ok], view[1][ok], matrix)
        return out

    def pose(self, landmarks68: np.ndarray, shape: tuple[int, ...]) -> dict:
        """One frame's yaw, pitch, roll (degrees), visible fraction and frontal `points`."""
        out = self.poses(landmarks68, shape)
        if not out["ok"][0]:
            raise VideoError("camera fit failed")
        info = {k: float(out[k][0]) for k in ("yaw", "pitch", "roll", "visible")}
        return {**info, "points": out["points"][0]}

    def frontal_points(self, landmarks68, rot, tvec, matrix) -> np.ndarray:
        """(T, 68, 2) frame landmarks → where they lie on a frontal face, in reference
        coordinates, under poses (T, 3, 3), (T, 3) fitted to the rigid points (nose, eye
        corners: what an expression does not move; see `poses`), so that raised brows or an
        open mouth are not taken for a nod.

        Each landmark is moved back along its camera ray to the depth its reference point has
        under that pose and rotated back to frontal: the head's rotation, position and scale
        are gone, what the face does stays, up to the depth the reference cannot know.
        """
        lm = np.asarray(landmarks68, np.float64)
        depth = (self.all_points @ rot.transpose(0, 2, 1) + tvec[:, None])[..., 2]
        rays = np.concatenate([lm, np.ones(lm.shape[:2] + (1,))], axis=2)
        cam = rays @ np.linalg.inv(matrix).T * depth[..., None]
        back = (cam - tvec[:, None]) @ rot  # each frame's rot.T applied to each row
        return (back[..., :2] + CENTER).astype(np.float32)

    def render(self, frame, rot, tvec, matrix, seen) -> np.ndarray:
        """The frontal (size, size, 3) crop of one frame (RGB array or LazyFrame) under a pose
        from `poses` (rot (3, 3), tvec (3,), the camera, the visibility map)."""
        import cv2

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
        return crop

    def warp(self, frame, landmarks68: np.ndarray) -> tuple[np.ndarray, dict]:
        """Frontal (size, size, 3) crop of one frame (RGB array or LazyFrame); and its pose and
        visible fraction."""
        out = self.poses(landmarks68, frame.shape, render=True)
        if not out["ok"][0]:
            raise VideoError("camera fit failed")
        args = (out["render_rot"][0], out["render_tvec"][0], out["matrix"], out["render_seen"][0])
        crop = self.render(frame, *args)
        info = {k: float(out[k][0]) for k in ("yaw", "pitch", "roll", "visible")}
        return crop, {**info, "points": out["points"][0]}

    def visibility(self, rot: np.ndarray, tvec: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(T, COARSE, COARSE) float32 in [0, 1]: how clearly each part of the crop's surface is
        seen under each pose (rot (T, 3, 3), tvec (T, 3)).

        The surface, sampled on a COARSE grid, is projected and binned on an image grid one
        sample wide; a point is seen when no point of its bin is nearer to the camera by more
        than 6 units (≈ 10 mm, so neighbours on a slope do not hide each other). A frontal face
        is ~99 % visible, one turned 40° ~93 %. The map is blurred a little (3 × 3 Gaussian) so
        symmetry blends smoothly.
        """
        n = len(rot)
        cam = self.coarse @ rot.transpose(0, 2, 1) + tvec[:, None]
        xy = (cam @ matrix.T)[..., :2] / cam[..., 2:3]
        xy = xy.astype(np.float32)  # as project_points rounds them
        cell = np.maximum(1.0, (112.0 / COARSE) * matrix[0, 0] / tvec[:, 2])
        ij = np.floor(xy / cell[:, None, None]).astype(np.int64)
        ij -= ij.min(1, keepdims=True)
        key = ij[..., 1] * (ij[..., 0].max(1, keepdims=True) + 1) + ij[..., 0]
        offset = np.concatenate([[0], np.cumsum(key.max(1) + 1)[:-1]])
        key = key + offset[:, None]
        nearest = np.full(int(key.max()) + 1, np.inf)
        np.minimum.at(nearest, key.ravel(), cam[..., 2].ravel())
        seen = (cam[..., 2] <= nearest[key] + 6.0).astype(np.float32).reshape(n, COARSE, COARSE)
        return blur3(seen)


def project_points(points, rot, tvec, matrix) -> np.ndarray:
    """Pinhole projection of object points (N, 3) → image points (N, 2) float32."""
    proj = (points @ rot.T + tvec.reshape(1, 3)) @ matrix.T
    return (proj[:, :2] / proj[:, 2:3]).astype(np.float32)


def blur3(maps: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(map, (3, 3), 0) of each (H, W) map of a stack (T, H, W): the kernel
    (1, 2, 1) / 4 both ways, borders reflected without repeating the edge."""
    out = maps
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        p = np.pad(out, pad, mode="reflect")
        lo, mid, hi = (np.take(p, range(k, k + maps.shape[axis]), axis=axis) for k in range(3))
        out = (lo + 2 * mid + hi) * np.float32(0.25)
    return out.astype(np.float32)


def rotations(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) of rotation vectors (T, 3) (Rodrigues' formula)."""
    rvec = np.asarray(rvec, np.float64).reshape(-1, 3)
    theta = np.linalg.norm(rvec, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = _skew(rvec / safe[:, None])
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices (..., 3, 3) of vectors (..., 3): _skew(a) @ b = a × b."""
    out = np.zeros(v.shape + (3,))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def to_object(points: np.ndarray) -> np.ndarray:
    """Reference coordinates (x right, y down, depth toward the viewer) → a right-handed object
    frame centred on the head, z away from the viewer (OpenCV's camera convention)."""
    out = np.array(points, np.float64, copy=True)
    out[:, 0] -= CENTER[0]
    out[:, 1] -= CENTER[1]
    out[:, 2] = -out[:, 2]
    return out


def pose_angles(rot: np.ndarray, position: np.ndarray | None = None) -> dict:
    """Yaw, pitch, roll in degrees of a head rotation (object → camera), (3, 3) → floats, or
    of a stack of them (T, 3, 3) → arrays (T,).

    Angles are relative to the line of sight to the head at `position` (camera coordinates,
    (3,) or (T, 3)), so a face looking straight at the camera is frontal wherever it is in the
    frame. yaw > 0: the face turns toward the image's right; pitch > 0: it looks up; roll > 0:
    it tilts clockwise on screen. All 0 for a frontal, upright face.
    """
    single = np.ndim(rot) == 2
    rot = np.asarray(rot, np.float64).reshape(-1, 3, 3)
    if position is not None:
        ray = np.asarray(position, np.float64).reshape(-1, 3)
        ray = ray / np.linalg.norm(ray, axis=1, keepdims=True)
        axis = np.cross(ray, [0.0, 0.0, 1.0])  # rotate each ray onto the optical axis
        angle = np.arccos(np.clip(ray[:, 2], -1.0, 1.0))
        norm = np.linalg.norm(axis, axis=1)
        unit = axis / np.where(norm > 1e-12, norm, 1.0)[:, None]
        rot = rotations(unit * np.where(norm > 1e-12, angle, 0.0)[:, None]) @ rot
    forward = -rot[:, :, 2]  # the nose's direction, toward the viewer when frontal
    right = rot[:, :, 0]
    out = {
        "yaw": np.degrees(np.arctan2(forward[:, 0], -forward[:, 2])),
        "pitch": np.degrees(np.arctan2(-forward[:, 1], np.hypot(forward[:, 0], forward[:, 2]))),
        "roll": np.degrees(np.arctan2(right[:, 1], right[:, 0])),
    }
    return {k: float(v[0]) for k, v in out.items()} if single else out


def soft_symmetry(crop: np.ndarray, seen: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend each head pixel seen less clearly than its mirror toward the mirrored crop."""
    mirror_seen = seen[:, ::-1]
    weight = np.where(seen >= mirror_seen, 1.0, seen / np.maximum(mirror_seen, 1e-6))
    weight = np.where(mask, weight, 1.0)[..., None]
    blended = weight * crop + (1.0 - weight) * crop[:, ::-1]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
