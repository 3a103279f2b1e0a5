"""The `detect_faces` stage: MTCNN face boxes and 5-point landmarks for every frame.

For each video of one shard, frames are decoded in a stream and detected in batches with
facenet-pytorch's MTCNN (weights ship inside the wheel). The largest face of each frame is
kept; frames without a face are marked invalid, never dropped, so frame indices stay exact.

Output `faces/shard-{k}.h5`, one group per video:

    boxes      (T, 4) float32   x1, y1, x2, y2 in source pixels (NaN where no face)
    scores     (T,)   float32   detector confidence (0 where no face)
    landmarks  (T, 5, 2) float32  eyes, nose, mouth corners (NaN where no face)
    valid      (T,)   bool      a face was found in that frame
    n_faces    (T,)   uint8     how many faces the detector saw
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from pipeline.common import (
    VideoError,
    parse_params,
    read_csv,
    resolve_device,
    run_main,
    set_threads,
    setup_logging,
    shard_of,
)
from pipeline.store import shard_writer
from pipeline.video import batched, iter_frames

log = logging.getLogger(__name__)

DEFAULTS = {
    "detector": "mtcnn",
    "min_face_size": 40,
    "thresholds": [0.6, 0.7, 0.7],
    "batch_size": 16,
    "min_confidence": 0.9,
    "device": "auto",
}


def build_detector(params: dict):
    """facenet-pytorch MTCNN from the config's `face` section (packaged weights, no download)."""
    from facenet_pytorch import MTCNN

    p = {**DEFAULTS, **params}
    if p["detector"] != "mtcnn":
        raise ValueError(f"unknown face detector {p['detector']!r}; known: mtcnn")
    return MTCNN(
        keep_all=True,
        min_face_size=p["min_face_size"],
        thresholds=p["thresholds"],
        device=resolve_device(p["device"]),
    )


def largest_face(boxes, scores, landmarks, min_confidence: float):
    """Pick the largest confident face of one frame: (box (4,), score, landmarks (5, 2), n) or None."""
    if boxes is None:
        return None
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    keep = scores >= min_confidence
    if not keep.any():
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area[~keep] = -1
    i = int(np.argmax(area))
    return boxes[i], float(scores[i]), landmarks[i], int(keep.sum())


def detect_video(detector, path: str, n_frames: int, params: dict) -> dict[str, np.ndarray]:
    """Detect the largest face in every frame of one video; arrays as in the module docstring."""
    p = {**DEFAULTS, **params}
    boxes = np.full((n_frames, 4), np.nan, np.float32)
    scores = np.zeros(n_frames, np.float32)
    landmarks = np.full((n_frames, 5, 2), np.nan, np.float32)
    n_faces = np.zeros(n_frames, np.uint8)
    t = 0
    for batch in batched(iter_frames(path), p["batch_size"]):
        if t + len(batch) > n_frames:
            raise VideoError(f"{path}: decodes to more frames than probed ({n_frames})")
        b, s, lm = detector.detect(np.stack(batch), landmarks=True)
        for j in range(len(batch)):
            face = largest_face(b[j], s[j], lm[j], p["min_confidence"])
            if face is not None:
                boxes[t + j], scores[t + j], landmarks[t + j], n_faces[t + j] = face
        t += len(batch)
    valid = scores > 0
    if t != n_frames:
        log.warning("%s: %d frames decoded, %d probed; keeping %d", path, t, n_frames, t)
    return {
        "boxes": boxes[:t],
        "scores": scores[:t],
        "landmarks": landmarks[:t],
        "valid": valid[:t],
        "n_faces": n_faces[:t],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Detect faces in the videos of one shard.")
    ap.add_argument("--videos", required=True, help="results/dataset/videos.csv")
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--out", required=True, help="faces/shard-{k}.h5")
    ap.add_argument("--params", default="{}", help="the config's `face` section as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    params = {**DEFAULTS, **parse_params(args.params)}
    videos = read_csv(args.videos)
    mine = videos[[shard_of(v, args.shards) == args.shard for v in videos.video_id]]
    detector = build_detector(params)
    n_frames = n_valid = 0
    with shard_writer(args.out, shard=args.shard, shards=args.shards, params=params) as (
        f,
        skipped,
    ):
        for rec in mine.sort_values("video_id").to_dict("records"):
            try:
                arrays = detect_video(detector, rec["path"], int(rec["n_frames"]), params)
                if not arrays["valid"].any():
                    raise VideoError(
                        f"{rec['path']}: no face found in any of {len(arrays['valid'])} frames"
                    )
            except VideoError as err:
                if args.on_error == "fail":
                    raise
                log.warning("skipping %s: %s", rec["video_id"], err)
                skipped[rec["video_id"]] = str(err)
                continue
            group = f.create_group(rec["video_id"])
            for name, array in arrays.items():
                group.create_dataset(name, data=array)
            group.attrs["fps"] = float(rec["fps"])
            n_frames += len(arrays["valid"])
            n_valid += int(arrays["valid"].sum())
    rate = n_valid / max(n_frames, 1)
    log.info(
        "shard %d: %d videos, %d frames, face in %.1f %%, %d skipped",
        args.shard,
        len(mine),
        n_frames,
        100 * rate,
        len(skipped),
    )


if __name__ == "__main__":
    run_main(main)
