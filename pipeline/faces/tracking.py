"""Face tracks across frames: linking detections, choosing the primary subject, interpolating.

Pure NumPy, no detector and no I/O: `Face` is one detection in source pixels, `Tracker` links
detections of consecutive key frames into tracks and picks the primary subject among them, and
`Track` holds the primary face's per-frame arrays (boxes, 5 and 68 landmarks, scores, flags),
filled as frames are detected or interpolated. `pipeline.faces` drives them over a video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    recorded in `others` (frame, track, box, score), never mixed into the primary arrays. With
    `identities` (pipeline.faces.identity), only faces of the subject's identity can be primary.
    """

    def __init__(self, identities=None):
        self.last: dict[int, np.ndarray] = {}  # track id → last box
        self.hits: dict[int, int] = {}
        self.primary: int | None = None
        self.others: list[list[float]] = []
        self.identities = identities  # pipeline.faces.identity.Identities: follow one person

    def link(self, faces: list[Face], frame=None) -> None:
        """Give every face a track; with identities, describe new tracks (needs `frame`)."""
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
        if self.identities is not None and frame is not None:
            for face in faces:  # a cut to someone else in the same place: a new track
                descriptor = self.identities.changed(frame, face)
                if descriptor is not None:
                    old, face.track = face.track, len(self.hits)
                    self.hits[face.track] = 0
                    self.identities.split(old, face.track, descriptor)
            self.identities.observe(frame, faces, self.hits)

    def score(self, face: Face, faces: list[Face], shape: tuple[int, int]) -> float:
        height, width = shape
        size = face.size / max(f.size for f in faces)
        offset = np.hypot(face.center[0] / width - 0.5, face.center[1] / height - 0.5)
        centrality = 1.0 - offset / np.hypot(0.5, 0.5) / 2
        return size * centrality * (1.0 + np.log1p(self.hits.get(face.track, 0)))

    def pick(self, faces: list[Face], shape: tuple[int, int]) -> Face | None:
        """The primary face among linked `faces`, without updating the tracks."""
        ids = self.identities
        if ids is not None and ids.subject is not None:  # only the subject, by identity
            faces = [f for f in faces if ids.of(f.track) == ids.subject]
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
                row = [t, face.track, *face.box.tolist(), face.score]
                if self.identities is not None:
                    row.append(self.identities.of(face.track))
                self.others.append(row)
        if primary is not None:
            self.primary = primary.track
            ids = self.identities
            if ids is not None and ids.subject is None and ids.of(primary.track) >= 0:
                ids.subject = ids.of(primary.track)  # the first primary face's person
        return primary

    def others_array(self) -> np.ndarray:
        """(N, 7) frame, track, box, score of every other face seen; with identities (N, 8),
        the person as well (0 is the subject: numbers swapped where the subject was not the
        first person described)."""
        others = np.asarray(self.others, np.float32).reshape(-1, 7 + (self.identities is not None))
        subject = self.identities.subject if self.identities is not None else None
        if subject:  # not None, not 0
            person = others[:, 7].copy()
            others[person == subject, 7] = 0
            others[person == 0, 7] = subject
        return others


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
