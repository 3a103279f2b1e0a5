"""The `detect_faces` stage: MTCNN face boxes and 5-point landmarks for every frame.

For each video of one shard, frames are decoded in a stream and facenet-pytorch's MTCNN
(weights ship inside the wheel) runs on every `detect_every`-th frame (and the last):

- a full search on a copy downscaled to `detect_width` pixels at the first frame, whenever
  the face is lost, and at least every `full_every` frames;
- otherwise a search in a small region around the previous face, rescaled so that the face
  is about 64 pixels wide (a few pyramid levels instead of a dozen).

Boxes are mapped back to source pixels. Between two detections that agree (same face, moved
and rescaled by less than `max_motion` of its size) boxes and landmarks are interpolated;
otherwise every frame in between is detected too, so fast motion, a lost face or a cut gets
full detection. When several faces appear, the one
that continues the previous detection (IoU > 0.3) is kept, else the largest. Frames without a
face are marked invalid, never dropped, so frame indices stay exact. Videos that are already
face crops (`detector: none`, or frames of at most 160 pixels where no face is found, as in
48×48 FER datasets) get the whole frame as the face (group attr `cropped`). Memory is bounded by
`detect_every` decoded frames, whatever the video's length.

Output `faces/shard-{k}.h5`, one group per video:

    boxes      (T, 4) float32   x1, y1, x2, y2 in source pixels (NaN where no face)
    scores     (T,)   float32   detector confidence (0 where no face)
    landmarks  (T, 5, 2) float32  eyes, nose, mouth corners (NaN where no face)
    valid      (T,)   bool      a face was found (detected or interpolated) in that frame
    detected   (T,)   bool      the detector ran on that frame (else interpolated)
    n_faces    (T,)   uint8     how many faces the detector saw (0 on interpolated frames)
    time       (T,)   float64   presentation time of each frame, seconds (index / fps for
                                image folders)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass

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
from pipeline.video import LazyFrame, iter_lazy

log = logging.getLogger(__name__)

ROI_FACE = 64  # face width, in pixels, that a search near the previous face rescales to
ROI_MARGIN = 1.2  # half-side of that search region, in face widths
CROPPED_MAX = 160  # a video of frames this small where no face is found is taken as face crops

DEFAULTS = {
    "detector": "mtcnn",
    "min_face_size": 40,
    "thresholds": [0.6, 0.7, 0.7],
    "min_confidence": 0.9,
    "detect_width": 320,
    "detect_every": 10,
    "full_every": 90,
    "max_motion": 0.15,
    "device": "auto",
}


@dataclass
class Face:
    """One detected face in source pixels."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2)
    n_faces: int

    @property
    def size(self) -> float:
        return float(np.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1])))

    @property
    def center(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2


class Detector:
    """MTCNN on downscaled frames; results in source-frame pixels.

    Args:
        params: the config's `face` section (see DEFAULTS).
    """

    def __init__(self, params: dict):
        p = {**DEFAULTS, **params}
        if p["detector"] not in ("mtcnn", "none"):
            raise ValueError(f"unknown face detector {p['detector']!r}; known: mtcnn, none")
        self.p = p
        self.device = resolve_device(p["device"])
        self._nets: dict[int, object] = {}

    def _net(self, min_face: int):
        """One MTCNN per smallest-face size (it depends on each video's downscale factor)."""
        if min_face not in self._nets:
            from facenet_pytorch import MTCNN

            self._nets[min_face] = MTCNN(
                keep_all=True,
                min_face_size=min_face,
                thresholds=self.p["thresholds"],
                device=self.device,
            )
        return self._nets[min_face]

    def scale_for(self, width: int) -> float:
        target = int(self.p["detect_width"])
        return target / width if 0 < target < width else 1.0

    @staticmethod
    def shrink(frame: np.ndarray, scale: float) -> np.ndarray:
        import cv2

        if scale == 1.0:
            return frame
        size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def _pick(self, boxes, scores, landmarks, previous: Face | None) -> Face | None:
        """Of the confident faces, the one continuing `previous` (IoU > 0.3), else the largest."""
        if boxes is None:
            return None
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        keep = np.flatnonzero(scores >= self.p["min_confidence"])
        if not len(keep):
            return None
        area = (boxes[keep, 2] - boxes[keep, 0]) * (boxes[keep, 3] - boxes[keep, 1])
        pick = keep[int(np.argmax(area))]
        if previous is not None:
            overlaps = iou(previous.box, boxes[keep])
            if overlaps.max() > 0.3:
                pick = keep[int(np.argmax(overlaps))]
        return Face(boxes[pick], float(scores[pick]), landmarks[pick], len(keep))

    def detect_full(self, frame: np.ndarray, previous: Face | None = None) -> Face | None:
        """Search the whole RGB frame (H, W, 3), downscaled to `detect_width`."""
        scale = self.scale_for(frame.shape[1])
        net = self._net(max(12, round(self.p["min_face_size"] * scale)))
        boxes, scores, landmarks = net.detect(self.shrink(frame, scale), landmarks=True)
        if boxes is not None:
            boxes = np.asarray(boxes, np.float32) / scale
            landmarks = np.asarray(landmarks, np.float32) / scale
        return self._pick(boxes, scores, landmarks, previous)

    def detect_near(self, frame: np.ndarray, previous: Face) -> Face | None:
        """Search a region around `previous`, rescaled so the face is about ROI_FACE pixels."""
        import cv2

        size = previous.size
        cx, cy = previous.center
        half = ROI_MARGIN * size
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(frame.shape[1], int(cx + half)), min(frame.shape[0], int(cy + half))
        if x1 - x0 < 12 or y1 - y0 < 12:
            return None
        scale = ROI_FACE / size
        crop = cv2.resize(
            frame[y0:y1, x0:x1],
            (max(12, round((x1 - x0) * scale)), max(12, round((y1 - y0) * scale))),
            interpolation=cv2.INTER_AREA,
        )
        boxes, scores, landmarks = self._net(ROI_FACE // 2).detect(crop, landmarks=True)
        if boxes is not None:
            offset = np.array([x0, y0], np.float32)
            boxes = np.asarray(boxes, np.float32) / scale + np.tile(offset, 2)
            landmarks = np.asarray(landmarks, np.float32) / scale + offset
        return self._pick(boxes, scores, landmarks, previous)

    def detect(self, frame: np.ndarray, previous: Face | None, full: bool = False) -> Face | None:
        """Near `previous` when there is one (and `full` is not asked), falling back to a full search."""
        if previous is not None and not full:
            face = self.detect_near(frame, previous)
            if face is not None:
                return face
        return self.detect_full(frame, previous)

    def agree(self, a: Face | None, b: Face | None) -> bool:
        """Two detections close enough to interpolate between."""
        if a is None or b is None:
            return False
        size = (a.size + b.size) / 2
        moved = np.linalg.norm(a.center - b.center) / size
        rescaled = abs(np.log(a.size / b.size))
        return moved <= self.p["max_motion"] and rescaled <= np.log1p(self.p["max_motion"])


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with (N, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-6)


class Track:
    """Per-frame arrays of one video, filled as frames are detected or interpolated."""

    def __init__(self, n: int):
        self.boxes = np.full((n, 4), np.nan, np.float32)
        self.scores = np.zeros(n, np.float32)
        self.landmarks = np.full((n, 5, 2), np.nan, np.float32)
        self.detected = np.zeros(n, bool)
        self.n_faces = np.zeros(n, np.uint8)

    def grow(self, n: int) -> None:
        """Make room for n frames (when a video decodes to more frames than probed)."""
        if n > len(self.scores):
            extra = max(n, 2 * len(self.scores)) - len(self.scores)
            self.boxes = np.concatenate([self.boxes, np.full((extra, 4), np.nan, np.float32)])
            self.scores = np.concatenate([self.scores, np.zeros(extra, np.float32)])
            self.landmarks = np.concatenate(
                [self.landmarks, np.full((extra, 5, 2), np.nan, np.float32)]
            )
            self.detected = np.concatenate([self.detected, np.zeros(extra, bool)])
            self.n_faces = np.concatenate([self.n_faces, np.zeros(extra, np.uint8)])

    def put(self, t: int, face: Face | None) -> None:
        self.detected[t] = True
        if face is not None:
            self.boxes[t], self.scores[t], self.landmarks[t] = face.box, face.score, face.landmarks
            self.n_faces[t] = min(face.n_faces, 255)

    def interpolate(self, t0: int, a: Face, t1: int, b: Face) -> None:
        """Linear interpolation of boxes and landmarks for frames t0 < t < t1."""
        for t in range(t0 + 1, t1):
            w = (t - t0) / (t1 - t0)
            self.boxes[t] = (1 - w) * a.box + w * b.box
            self.landmarks[t] = (1 - w) * a.landmarks + w * b.landmarks
            self.scores[t] = min(a.score, b.score)

    def arrays(self, n: int) -> dict[str, np.ndarray]:
        return {
            "boxes": self.boxes[:n],
            "scores": self.scores[:n],
            "landmarks": self.landmarks[:n],
            "valid": self.scores[:n] > 0,
            "detected": self.detected[:n],
            "n_faces": self.n_faces[:n],
        }


def detect_video(
    detector: Detector, path: str, n_frames: int | None = None, fps: float = 30.0
) -> dict[str, np.ndarray]:
    """Detect (or interpolate) the subject's face in every frame of one video.

    `n_frames` (from probing) only sizes the arrays; the video's end is found by decoding.
    `fps` times the frames of image folders, which carry no timestamps.
    Returns the arrays of the module docstring, one row per decoded frame.
    """
    crops = detector.p["detector"] == "none"
    every = max(1, int(detector.p["detect_every"]))
    full_every = max(every, int(detector.p["full_every"]))
    track = Track(max(n_frames or 0, 1))
    pending: list[tuple[int, LazyFrame]] = []  # frames since the last detection (< every)
    last: tuple[int, Face | None] | None = None
    last_full = -full_every

    def key(t: int, frame: LazyFrame) -> None:
        nonlocal last, last_full, pending
        previous = last[1] if last else None
        full = t - last_full >= full_every
        face = detector.detect(frame.rgb(), previous, full=full)
        if full or previous is None:
            last_full = t
        track.put(t, face)
        if last is not None and pending:
            t0, f0 = last
            if detector.agree(f0, face):
                track.interpolate(t0, f0, t, face)
            else:  # motion, a lost face or a cut: detect every frame in between
                guide = f0
                for tp, fp in pending:
                    guide = detector.detect(fp.rgb(), guide or face)
                    track.put(tp, guide)
        pending = []
        last = (t, face)

    t = -1
    shape = None
    times: list[float] = []
    for t, frame in enumerate(iter_lazy(path)):
        track.grow(t + 1)
        times.append(t / fps if frame.time is None else frame.time)
        shape = shape or frame.rgb().shape[:2]  # frame 0 is always detected: no extra cost
        if crops:
            continue
        if t % every == 0:
            key(t, frame)
        else:
            pending.append((t, frame))
    if t < 0:
        raise VideoError(f"{path}: no frames decoded")
    if pending:  # the last frame is always detected
        tl, fl = pending.pop()
        key(tl, fl)
    n = t + 1
    if n_frames is not None and n != n_frames:
        log.warning("%s: %d frames decoded, %d probed; keeping %d", path, n, n_frames, n)
    arrays = track.arrays(n)
    if not crops and not arrays["valid"].any() and max(shape) <= CROPPED_MAX:
        log.warning(
            "%s: no face found in %d frames of at most %d pixels: taken as face crops",
            path,
            n,
            CROPPED_MAX,
        )
        crops = True
    if crops:
        arrays = cropped(n, *shape)
    arrays["time"] = np.asarray(times, np.float64)
    return arrays


def cropped(n: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Arrays for n frames that are already face crops (e.g. 48×48 FER frames).

    The face is the whole frame, its landmarks the canonical template scaled to the frame,
    so alignment reduces to a resize. `detected` is false and the group gets attr `cropped`.
    """
    from pipeline.frontalize import TEMPLATE_112

    landmarks = (TEMPLATE_112 / 112.0 * [width, height]).astype(np.float32)
    return {
        "boxes": np.tile(np.array([0, 0, width, height], np.float32), (n, 1)),
        "scores": np.ones(n, np.float32),
        "landmarks": np.tile(landmarks, (n, 1, 1)),
        "valid": np.ones(n, bool),
        "detected": np.zeros(n, bool),
        "n_faces": np.ones(n, np.uint8),
        "cropped": True,
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
    detector = Detector(params)
    n_frames = n_valid = 0
    with shard_writer(args.out, shard=args.shard, shards=args.shards, params=params) as (
        f,
        skipped,
    ):
        for rec in mine.sort_values("video_id").to_dict("records"):
            try:
                arrays = detect_video(
                    detector, rec["path"], int(rec["n_frames"]), float(rec["fps"])
                )
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
            group.attrs["cropped"] = bool(arrays.pop("cropped", False))
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
