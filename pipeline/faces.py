"""The `detect_faces` stage: the primary subject's face box and landmarks in every frame.

For each video of one shard, frames are decoded in a stream (upright, at `dataset.target_fps`)
and facenet-pytorch's MTCNN (weights ship inside the wheel) runs on every `detect_every`-th
frame (and the last):

- a full search on a copy downscaled to `detect_width` pixels at the first frame, whenever
  the face is lost, and at least every `full_every` frames;
- otherwise a search in a small region around the previous face, rescaled so that the face
  is about 64 pixels wide (a few pyramid levels instead of a dozen).

Boxes are mapped back to source pixels. Detections are linked into tracks (`Tracker`); one
primary subject is followed, chosen by size, centrality and persistence; other faces are
recorded apart. Between two detections of the primary track that agree (moved and rescaled by
less than `max_motion` of its size) boxes and landmarks are interpolated; otherwise every frame
in between is detected too, so fast motion, a lost face or a cut gets full detection. Gaps of
up to `max_gap` frames without a face between two agreeing detections are interpolated
(`filled`). dlib's 68-point predictor (`face.landmarks: dlib`) runs on every frame with a face,
started from its MTCNN box; landmarks are then smoothed over time (Gaussian, `smooth` frames)
within each run of one track. Frames without a face are marked invalid, never dropped, so frame
indices stay exact. Videos that are already face crops (`detector: none`, or frames of at most
160 pixels where no face is found, as in 48×48 FER datasets) get the whole frame as the face
(group attr `cropped`). Memory is bounded by `detect_every` decoded frames, whatever the
video's length.

Output `faces/shard-{k}.h5`, one group per video (attrs fps, cropped):

    boxes       (T, 4) float32     x1, y1, x2, y2 in source pixels (NaN where no face)
    scores      (T,)   float32     detector confidence (0 where no face)
    landmarks   (T, 5, 2) float32  eyes, nose, mouth corners (NaN where no face)
    landmarks68 (T, 68, 2) float32 iBUG 68-point mark-up (only with face.landmarks: dlib)
    valid       (T,)   bool        a face was found (detected or interpolated) in that frame
    detected    (T,)   bool        the detector ran on that frame (else interpolated)
    filled      (T,)   bool        the detector ran but missed; interpolated across the gap
    n_faces     (T,)   uint8       how many faces the detector saw (0 on interpolated frames)
    track       (T,)   int32       track id of the primary face (-1 where no face)
    others      (N, 7) float32     every other face seen: frame, track, x1, y1, x2, y2, score
    time        (T,)   float64     presentation time of each frame, seconds
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
from pipeline.store import Resume, file_state, shard_writer
from pipeline.video import LazyFrame, decode_options, iter_lazy

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
    "max_gap": 5,
    "landmarks": "dlib",
    "landmark_model": None,
    "smooth": 1.0,
    "device": "auto",
}


@dataclass
class Face:
    """One detected face in source pixels."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2)
    n_faces: int = 1
    track: int = -1

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
        if p["landmarks"] not in ("dlib", "none"):
            raise ValueError(f"unknown face.landmarks {p['landmarks']!r}; known: dlib, none")
        self.p = p
        self.device = resolve_device(p["device"])
        self._nets: dict[int, object] = {}
        self.landmarker = None
        if p["landmarks"] == "dlib":
            from pipeline.landmarks import Landmarker

            self.landmarker = Landmarker(p["landmark_model"])

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

    def _faces(self, boxes, scores, landmarks) -> list[Face]:
        """The confident detections, most confident first."""
        if boxes is None:
            return []
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        keep = np.flatnonzero(scores >= self.p["min_confidence"])
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return [Face(boxes[i], float(scores[i]), landmarks[i], len(keep)) for i in keep]

    def detect_full(self, frame: np.ndarray) -> list[Face]:
        """Search the whole RGB frame (H, W, 3), downscaled to `detect_width`."""
        scale = self.scale_for(frame.shape[1])
        net = self._net(max(12, round(self.p["min_face_size"] * scale)))
        boxes, scores, landmarks = net.detect(self.shrink(frame, scale), landmarks=True)
        if boxes is not None:
            boxes = np.asarray(boxes, np.float32) / scale
            landmarks = np.asarray(landmarks, np.float32) / scale
        return self._faces(boxes, scores, landmarks)

    def detect_near(self, frame: np.ndarray, previous: Face) -> list[Face]:
        """Search a region around `previous`, rescaled so the face is about ROI_FACE pixels."""
        import cv2

        size = previous.size
        cx, cy = previous.center
        half = ROI_MARGIN * size
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(frame.shape[1], int(cx + half)), min(frame.shape[0], int(cy + half))
        if x1 - x0 < 12 or y1 - y0 < 12:
            return []
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
        return self._faces(boxes, scores, landmarks)

    def detect(self, frame: np.ndarray, previous: Face | None, full: bool = False) -> list[Face]:
        """Near `previous` when there is one (and `full` is not asked); a full search when that
        finds nothing continuing `previous`."""
        if previous is not None and not full:
            faces = self.detect_near(frame, previous)
            if any(iou(previous.box, f.box[None])[0] > 0.3 for f in faces):
                return faces
        return self.detect_full(frame)

    def agree(self, a: Face | None, b: Face | None) -> bool:
        """Two detections of one face close enough to interpolate between."""
        if a is None or b is None or a.track != b.track:
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


class Tracker:
    """Links detections into face tracks and picks the primary subject among them.

    A detection continues the track whose last box it overlaps most (IoU > 0.3), else starts a
    new one. The primary subject is followed while it is seen; when it is lost (or at the first
    detection) the face with the best `size × centrality × (1 + log(1 + persistence))` is taken:
    size relative to the largest face in the frame, centrality 1 at the frame centre and 0.5 at
    a corner, persistence the number of detections of its track so far. Every other face seen is
    recorded in `others` (frame, track, box, score), never mixed into the primary arrays.
    """

    def __init__(self):
        self.last: dict[int, np.ndarray] = {}  # track id → last box
        self.hits: dict[int, int] = {}
        self.primary: int | None = None
        self.others: list[list[float]] = []

    def link(self, faces: list[Face]) -> None:
        taken: set[int] = set()
        for face in faces:  # most confident first
            best, best_iou = None, 0.3
            for tid, box in self.last.items():
                overlap = float(iou(box, face.box[None])[0])
                if tid not in taken and overlap > best_iou:
                    best, best_iou = tid, overlap
            if best is None:
                best = len(self.hits)
                self.hits[best] = 0
            face.track = best
            taken.add(best)

    def score(self, face: Face, faces: list[Face], shape: tuple[int, int]) -> float:
        height, width = shape
        size = face.size / max(f.size for f in faces)
        offset = np.hypot(face.center[0] / width - 0.5, face.center[1] / height - 0.5)
        centrality = 1.0 - offset / np.hypot(0.5, 0.5) / 2
        return size * centrality * (1.0 + np.log1p(self.hits.get(face.track, 0)))

    def pick(self, faces: list[Face], shape: tuple[int, int]) -> Face | None:
        """The primary face among linked `faces`, without updating the tracks."""
        if not faces:
            return None
        for face in faces:
            if face.track == self.primary:
                return face
        return max(faces, key=lambda f: self.score(f, faces, shape))

    def choose(self, t: int, faces: list[Face], shape: tuple[int, int]) -> Face | None:
        """Pick the primary face of frame t, record the others, update the tracks."""
        primary = self.pick(faces, shape)
        for face in faces:
            self.last[face.track] = face.box
            self.hits[face.track] += 1
            if face is not primary:
                self.others.append([t, face.track, *face.box.tolist(), face.score])
        if primary is not None:
            self.primary = primary.track
        return primary

    def others_array(self) -> np.ndarray:
        return np.asarray(self.others, np.float32).reshape(-1, 7)


class Track:
    """Per-frame arrays of one video's primary face, filled as frames are detected or interpolated."""

    FIELDS = {
        "boxes": ((4,), np.nan, np.float32),
        "scores": ((), 0, np.float32),
        "landmarks": ((5, 2), np.nan, np.float32),
        "landmarks68": ((68, 2), np.nan, np.float32),
        "detected": ((), False, bool),
        "filled": ((), False, bool),
        "n_faces": ((), 0, np.uint8),
        "track": ((), -1, np.int32),
    }

    def __init__(self, n: int):
        for name, (shape, fill, dtype) in self.FIELDS.items():
            setattr(self, name, np.full((n, *shape), fill, dtype))

    def grow(self, n: int) -> None:
        """Make room for n frames (when a video decodes to more frames than probed)."""
        if n > len(self.scores):
            extra = max(n, 2 * len(self.scores)) - len(self.scores)
            for name, (shape, fill, dtype) in self.FIELDS.items():
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.full((extra, *shape), fill, dtype)]))

    def put(self, t: int, face: Face | None) -> None:
        self.detected[t] = True
        if face is not None:
            self.boxes[t], self.scores[t], self.landmarks[t] = face.box, face.score, face.landmarks
            self.n_faces[t] = min(face.n_faces, 255)
            self.track[t] = face.track

    def interpolate(self, t0: int, t1: int) -> None:
        """Linear interpolation of the primary face for frames t0 < t < t1 from frames t0, t1."""
        for t in range(t0 + 1, t1):
            w = (t - t0) / (t1 - t0)
            self.boxes[t] = (1 - w) * self.boxes[t0] + w * self.boxes[t1]
            self.landmarks[t] = (1 - w) * self.landmarks[t0] + w * self.landmarks[t1]
            self.landmarks68[t] = (1 - w) * self.landmarks68[t0] + w * self.landmarks68[t1]
            self.scores[t] = min(self.scores[t0], self.scores[t1])
            self.track[t] = self.track[t0]

    def fill_gaps(self, n: int, max_gap: int, agree) -> None:
        """Interpolate runs of at most `max_gap` frames without a face between two frames of the
        same track that `agree` (a missed detection, a blink of occlusion); mark them `filled`."""
        valid = self.scores[:n] > 0
        idx = np.flatnonzero(valid)
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            if 1 < b - a <= max_gap + 1 and agree(self.face(a), self.face(b)):
                self.interpolate(a, b)
                self.filled[a + 1 : b] = True

    def face(self, t: int) -> Face:
        return Face(self.boxes[t], float(self.scores[t]), self.landmarks[t], 1, int(self.track[t]))

    def arrays(self, n: int, with68: bool) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name)[:n] for name in self.FIELDS}
        out["valid"] = self.scores[:n] > 0
        if not with68:
            del out["landmarks68"]
        return out


def detect_video(
    detector: Detector,
    path: str,
    n_frames: int | None = None,
    fps: float = 30.0,
    decode: dict | None = None,
) -> dict[str, np.ndarray]:
    """Detect (or interpolate) the primary subject's face in every frame of one video.

    `n_frames` (from probing) only sizes the arrays; the video's end is found by decoding.
    `fps` times the frames of image folders, which carry no timestamps; `decode` holds the
    iter_lazy options (target_fps, folder_fps) of this video.
    Returns the arrays of the module docstring, one row per decoded frame.
    """
    p = detector.p
    crops = p["detector"] == "none"
    every = max(1, int(p["detect_every"]))
    full_every = max(every, int(p["full_every"]))
    track = Track(max(n_frames or 0, 1))
    tracker = Tracker()
    pending: list[tuple[int, LazyFrame]] = []  # frames since the last detection (< every)
    last: tuple[int, Face | None] | None = None
    last_full = -full_every
    shape: tuple[int, int] | None = None

    def landmarks68(frames: list[tuple[int, LazyFrame]]) -> None:
        if detector.landmarker is not None:
            for t, frame in frames:
                if track.scores[t] > 0:
                    track.landmarks68[t] = detector.landmarker(frame.grey(), track.boxes[t])

    def key(t: int, frame: LazyFrame) -> None:
        nonlocal last, last_full, pending
        previous = last[1] if last else None
        full = t - last_full >= full_every
        faces = detector.detect(frame.rgb(), previous, full=full)
        if full or previous is None:
            last_full = t
        tracker.link(faces)
        if last is not None and pending:
            t0, f0 = last
            if detector.agree(f0, tracker.pick(faces, shape)):
                face = tracker.choose(t, faces, shape)
                track.put(t, face)
                track.interpolate(t0, t)
            else:  # motion, a lost face or a cut: detect every frame in between
                guide = f0
                for tp, fp in pending:
                    near = detector.detect(fp.rgb(), guide or previous)
                    tracker.link(near)
                    guide = tracker.choose(tp, near, shape)
                    track.put(tp, guide)
                tracker.link(faces)  # again: tracks moved on in between
                face = tracker.choose(t, faces, shape)
                track.put(t, face)
        else:
            face = tracker.choose(t, faces, shape)
            track.put(t, face)
        landmarks68([*pending, (t, frame)])
        pending = []
        last = (t, face)

    t = -1
    times: list[float] = []
    for t, frame in enumerate(iter_lazy(path, **(decode or {}))):
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
    with68 = detector.landmarker is not None
    if not crops:
        track.fill_gaps(n, int(p["max_gap"]), detector.agree)
    arrays = track.arrays(n, with68)
    if not crops and not arrays["valid"].any() and max(shape) <= CROPPED_MAX:
        log.warning(
            "%s: no face found in %d frames of at most %d pixels: taken as face crops",
            path,
            n,
            CROPPED_MAX,
        )
        crops = True
    if crops:
        arrays = cropped(n, *shape, with68=with68)
    else:
        from pipeline.landmarks import smooth

        for name in ("landmarks", "landmarks68") if with68 else ("landmarks",):
            arrays[name] = smooth(arrays[name], arrays["valid"], p["smooth"], arrays["track"])
        arrays["others"] = tracker.others_array()
    arrays["time"] = np.asarray(times, np.float64)
    return arrays


def cropped(n: int, height: int, width: int, with68: bool = False) -> dict[str, np.ndarray]:
    """Arrays for n frames that are already face crops (e.g. 48×48 FER frames).

    The face is the whole frame, its landmarks the canonical templates scaled to the frame,
    so alignment reduces to a resize. `detected` is false and the group gets attr `cropped`.
    """
    from pipeline.frontalize import TEMPLATE_112
    from pipeline.reference3d import FRONTAL_68

    scale = np.array([width, height]) / 112.0
    out = {
        "boxes": np.tile(np.array([0, 0, width, height], np.float32), (n, 1)),
        "scores": np.ones(n, np.float32),
        "landmarks": np.tile((TEMPLATE_112 * scale).astype(np.float32), (n, 1, 1)),
        "valid": np.ones(n, bool),
        "detected": np.zeros(n, bool),
        "filled": np.zeros(n, bool),
        "n_faces": np.ones(n, np.uint8),
        "track": np.zeros(n, np.int32),
        "others": np.zeros((0, 7), np.float32),
        "cropped": True,
    }
    if with68:
        out["landmarks68"] = np.tile((FRONTAL_68 * scale).astype(np.float32), (n, 1, 1))
    return out


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
    resume = Resume(args.out, {"stage": "detect_faces", "params": params})
    with shard_writer(args.out, shard=args.shard, shards=args.shards, params=params) as (
        f,
        skipped,
    ):
        for rec in mine.sort_values("video_id").to_dict("records"):
            vid = rec["video_id"]
            extra = [repr(sorted(rec.items())), file_state(rec["path"])]
            if resume.restore(vid, f, skipped, extra):
                if vid in f:
                    n_frames += len(f[vid]["valid"])
                    n_valid += int(f[vid]["valid"][:].sum())
                continue
            try:
                arrays = detect_video(
                    detector,
                    rec["path"],
                    int(rec["n_frames"]),
                    float(rec["fps"]),
                    decode_options(rec),
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
                resume.save(vid, f, skipped, extra)
                continue
            group = f.create_group(rec["video_id"])
            group.attrs["cropped"] = bool(arrays.pop("cropped", False))
            for name, array in arrays.items():
                group.create_dataset(name, data=array)
            group.attrs["fps"] = float(rec["fps"])
            group.attrs["primary_track"] = int(
                np.bincount(arrays["track"][arrays["track"] >= 0]).argmax()
            )
            n_frames += len(arrays["valid"])
            n_valid += int(arrays["valid"].sum())
            resume.save(vid, f, skipped, extra)
    resume.clear()
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
