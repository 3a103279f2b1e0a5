"""Who is who: dlib's face recognition ResNet, to keep the same person across cuts.

`Recogniser` turns a face (a frame and its box) into dlib's 128-d descriptor: the ResNet of
`dlib_face_recognition_resnet_model_v1.dat` on a 150×150 chip aligned by the 5-point shape
predictor, both files of the `face-recognition-models` package (located through its
installed metadata, as the 68-point predictor is; nothing is downloaded). Two faces of one
person lie closer than 0.6 (Euclidean), dlib's threshold (99.38 % on LFW).

`Identities` groups a video's face tracks into people: every track is described when it starts
and again at its 25th detection (and whenever its look changes, below); a track joins the nearest person whose mean
descriptor is within the threshold, else starts a new one. The *subject* is person 0: the
reference photo's person when one is given, else the person of the first primary face.
`pipeline.faces.tracking.Tracker` then follows only the subject: after a cut or a long loss it picks
the subject back up by identity instead of taking whichever face is largest and most central,
and while the subject is out of view there is no primary face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.common import packaged_file
from pipeline.faces.landmarks import PACKAGE, rect_for

RESNET = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
SHAPE5 = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
THRESHOLD = 0.6
SAMPLES = (0, 24)  # a track is described at these counts of its earlier detections
GATE = 0.9  # signature correlation below which a continuing track is checked by the ResNet


def model_paths(configured: str | None = None) -> tuple[Path, Path]:
    """The ResNet (`configured` if given) and the 5-point predictor of face-recognition-models."""
    resnet = packaged_file(configured, "face.identity_model", PACKAGE, RESNET, "0.3.0")
    shape5 = packaged_file(None, "face.identity_model", PACKAGE, SHAPE5, "0.3.0")
    return resnet, shape5


class Recogniser:
    """dlib's 128-d face descriptor of the face in `box` of a frame (RGB array or LazyFrame)."""

    def __init__(self, model: str | None = None):
        import dlib

        resnet, shape5 = model_paths(model)
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(resnet))
        self._shape = dlib.shape_predictor(str(shape5))

    def __call__(self, frame, box: np.ndarray) -> np.ndarray:
        width = float(box[2] - box[0])
        x0, y0, x1, y1 = box[0] - width, box[1] - width, box[2] + width, box[3] + width
        if hasattr(frame, "region"):
            image, left, top = frame.region(x0, y0, x1, y1)
        else:
            h, w = frame.shape[:2]
            left, top = max(0, int(x0)), max(0, int(y0))
            image = frame[top : min(h, int(np.ceil(y1))), left : min(w, int(np.ceil(x1)))]
        image = np.ascontiguousarray(image)
        rect = rect_for(np.asarray(box, np.float64) - [left, top, left, top])
        shape = self._shape(image, self._dlib.rectangle(*rect))
        return np.asarray(self._net.compute_face_descriptor(image, shape), np.float32)


def signature(frame, box: np.ndarray) -> np.ndarray:
    """A cheap look at a face: its box as a 16×16 grey thumbnail, zero mean, unit norm. Two
    looks at one face a few frames apart correlate above GATE; a cut to another face in the
    same place usually does not, and then the ResNet decides."""
    import cv2

    if hasattr(frame, "region"):
        image, _, _ = frame.region(*box)
    else:
        h, w = frame.shape[:2]
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        image = frame[y0 : max(y0 + 1, min(h, int(box[3]))), x0 : max(x0 + 1, min(w, int(box[2])))]
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


class Identities:
    """The people among one video's face tracks (see the module docstring)."""

    def __init__(
        self, recognise, reference: np.ndarray | None = None, threshold: float = THRESHOLD
    ):
        self.recognise = recognise
        self.threshold = float(threshold)
        self.sums: list[np.ndarray] = []  # per person: sum of descriptors
        self.counts: list[int] = []
        self.of_track: dict[int, int] = {}
        self.done: set[tuple[int, int]] = set()  # (track, detections) described
        self.subject: int | None = None
        self.looks: dict[int, np.ndarray] = {}  # track → its last signature
        self.pending: dict[int, np.ndarray] = {}  # track → descriptor taken when it split off
        self.checks = 0  # descriptors computed (the costly part), for the record
        if reference is not None:
            self.sums.append(np.asarray(reference, np.float64).copy())
            self.counts.append(1)
            self.subject = 0

    def person(self, descriptor: np.ndarray) -> int:
        """The person `descriptor` belongs to (added to their mean), or a new one."""
        if self.sums:
            means = np.stack(self.sums) / np.asarray(self.counts)[:, None]
            distance = np.linalg.norm(means - descriptor, axis=1)
            best = int(distance.argmin())
            if distance[best] < self.threshold:
                self.sums[best] += descriptor
                self.counts[best] += 1
                return best
        self.sums.append(np.asarray(descriptor, np.float64).copy())
        self.counts.append(1)
        return len(self.sums) - 1

    def describe(self, frame, box: np.ndarray) -> np.ndarray:
        self.checks += 1
        return self.recognise(frame, box)

    def changed(self, frame, face) -> np.ndarray | None:
        """When a face that continues a track (by overlap) looks different from the track's
        last look and its descriptor is not the track's person: that descriptor (the face
        starts a new track: a cut, or another person stepping into the same place)."""
        look = signature(frame, face.box)
        before = self.looks.get(face.track)
        self.looks[face.track] = look
        person = self.of_track.get(face.track)
        if before is None or person is None or float(look @ before) >= GATE:
            return None
        descriptor = self.describe(frame, face.box)
        mean = self.sums[person] / self.counts[person]
        if np.linalg.norm(mean - descriptor) < self.threshold:
            return None
        return descriptor

    def split(self, old: int, new: int, descriptor: np.ndarray) -> None:
        """Track `new` split off `old` with `descriptor` (see `changed`)."""
        self.looks[new] = self.looks.pop(old)
        self.pending[new] = descriptor

    def observe(self, frame, faces, hits: dict[int, int]) -> None:
        """Describe the linked `faces` whose track is new or at a sampled detection count."""
        for face in faces:
            seen = hits.get(face.track, 0)
            if seen not in SAMPLES or (face.track, seen) in self.done:
                continue
            self.done.add((face.track, seen))
            descriptor = self.pending.pop(face.track, None)
            if descriptor is None:
                descriptor = self.describe(frame, face.box)
            if face.track not in self.looks:
                self.looks[face.track] = signature(frame, face.box)
            if face.track not in self.of_track:
                self.of_track[face.track] = self.person(descriptor)
            else:  # a later look at the same track refines its person's mean
                k = self.of_track[face.track]
                self.sums[k] += descriptor
                self.counts[k] += 1

    def of(self, track: int) -> int:
        """The person of a track (-1: never described)."""
        return self.of_track.get(track, -1)
