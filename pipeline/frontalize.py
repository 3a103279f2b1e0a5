"""The `frontalize` stage: warp every frame's face to a canonical, upright crop.

Method `similarity` (this version): a 5-point similarity transform (rotation, uniform scale,
translation; Umeyama's least squares) maps the detected eyes, nose and mouth corners onto a
canonical template (the ArcFace 112×112 template, scaled to `crop_size`). Frames where no face
was detected borrow the landmarks of the nearest frame that has one and stay marked invalid.

Output `aligned/shard-{k}.h5`, one group per video:

    frames  (T, S, S, 3) uint8  aligned RGB crops, chunked 16 frames at a time
    valid   (T,) bool           a face was detected in that frame
    roll    (T,) float32        in-plane head rotation removed by the warp, degrees
    score   (T,) float32        detector confidence (0 where no face)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import h5py
import numpy as np

from pipeline.common import VideoError, parse_params, read_csv, run_main, setup_logging
from pipeline.store import frame_chunks, shard_writer
from pipeline.video import batched, iter_frames

log = logging.getLogger(__name__)

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
DEFAULTS = {"method": "similarity", "crop_size": 112}


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


def fill_nearest(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace the landmarks of invalid frames by those of the nearest valid frame. (T, 5, 2)."""
    if not valid.any():
        raise VideoError("no frame has a face")
    idx = np.flatnonzero(valid)
    t = np.arange(len(valid))
    pos = np.clip(np.searchsorted(idx, t), 1, len(idx) - 1) if len(idx) > 1 else np.zeros_like(t)
    left, right = idx[np.maximum(pos - 1, 0)], idx[pos]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    return landmarks[nearest]


def align_frame(frame: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Similarity-warp one RGB frame (H, W, 3) to a (size, size, 3) crop; return it and roll."""
    import cv2

    matrix = umeyama(landmarks, TEMPLATE_112 * (size / 112.0))
    crop = cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    roll = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return crop, roll


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Align the faces of one shard to a canonical crop.")
    ap.add_argument("--videos", required=True, help="results/dataset/videos.csv")
    ap.add_argument("--faces", required=True, help="faces/shard-{k}.h5 of the same shard")
    ap.add_argument("--out", required=True, help="aligned/shard-{k}.h5")
    ap.add_argument("--params", default="{}", help="the config's `frontalize` section as JSON")
    ap.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = {**DEFAULTS, **parse_params(args.params)}
    if params["method"] != "similarity":
        raise ValueError(f"unknown frontalize.method {params['method']!r}; known: similarity")
    size = int(params["crop_size"])
    paths = read_csv(args.videos).set_index("video_id")["path"]
    with (
        h5py.File(args.faces, "r") as faces,
        shard_writer(args.out, params=params) as (out, skipped),
    ):
        for vid in faces:
            det = faces[vid]
            valid = det["valid"][:]
            landmarks = fill_nearest(det["landmarks"][:], valid)
            n = len(valid)
            group = out.create_group(vid)
            frames = group.create_dataset(
                "frames",
                shape=(n, size, size, 3),
                dtype=np.uint8,
                chunks=frame_chunks((n, size, size, 3)),
                compression="gzip",
                compression_opts=4,
            )
            roll = np.zeros(n, np.float32)
            t = 0
            try:
                for batch in batched(iter_frames(paths[vid]), 16):
                    batch = batch[: max(0, n - t)]
                    crops = []
                    for j, frame in enumerate(batch):
                        crop, roll[t + j] = align_frame(frame, landmarks[t + j], size)
                        crops.append(crop)
                    if crops:
                        frames[t : t + len(crops)] = np.stack(crops)
                    t += len(batch)
                if t < n:
                    raise VideoError(f"{paths[vid]}: decoded {t} frames, detection saw {n}")
            except VideoError as err:
                if args.on_error == "fail":
                    raise
                del out[vid]
                skipped[vid] = str(err)
                continue
            group.create_dataset("valid", data=valid)
            group.create_dataset("roll", data=roll)
            group.create_dataset("score", data=det["scores"][:])
            group.attrs["fps"] = det.attrs["fps"]
    log.info("aligned %s: %d skipped", args.out, len(skipped))


if __name__ == "__main__":
    run_main(main)
