"""The face detector: MTCNN on downscaled frames, and dlib's 68 landmarks.

`Detector` searches a whole frame (downscaled to `detect_width`) or a small region around the
previous face (rescaled so the face is about `ROI_FACE` pixels wide), maps boxes and 5-point
landmarks back to source pixels, keeps the confident ones, and decides whether two detections
agree closely enough to interpolate between them. MTCNN runs as `pipeline.faces.mtcnn.Cascade`:
facenet-pytorch's networks and weights (they ship inside its wheel; nothing is downloaded), the
same results as its `MTCNN.detect`, faster. Frames may be RGB arrays or `LazyFrame`s, of which
a search near the previous face converts only that region.
"""

from __future__ import annotations

import numpy as np

from pipeline.common import ConfigError, VideoError, resolve_device
from pipeline.faces.landmarks import Landmarker
from pipeline.faces.tracking import Face, iou

ROI_FACE = 64  # face width, in pixels, that a search near the previous face rescales to
ROI_MARGIN = 1.2  # half-side of that search region, in face widths
FOLLOW_STEPS = 2  # O-net passes that follow a face from its previous box
ROI_MIN_FACE = 48  # smallest face looked for there: a face shrunk by a quarter since; smaller
# is a full search's job (each pyramid level below costs as much as all the others together)

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
    "landmark_every": 2,
    "follow": True,
    "landmark_model": None,
    "smooth": 1.0,
    "identity": "none",
    "identity_threshold": 0.6,
    "identity_model": None,
    "device": "auto",
}


class Detector:
    """MTCNN on downscaled frames; results in source-frame pixels.

    Args:
        params: the config's `face` section (see DEFAULTS).
    """

    def __init__(self, params: dict):
        p = {**DEFAULTS, **params}
        if p["detector"] not in ("mtcnn", "none"):
            raise ConfigError(f"unknown face detector {p['detector']!r}; known: mtcnn, none")
        if p["landmarks"] not in ("dlib", "none"):
            raise ConfigError(f"unknown face.landmarks {p['landmarks']!r}; known: dlib, none")
        if p["identity"] not in ("dlib", "none"):
            raise ConfigError(f"unknown face.identity {p['identity']!r}; known: dlib, none")
        self.p = p
        self.device = resolve_device(p["device"])
        self._cascade = None
        self.landmarker = None
        if p["landmarks"] == "dlib":
            self.landmarker = Landmarker(p["landmark_model"])
        self._recogniser = None
        self._photos: dict[tuple, np.ndarray] = {}  # reference photos described, by file state

    @property
    def recogniser(self):
        """dlib's face recognition ResNet (made on first use)."""
        if self._recogniser is None:
            from pipeline.faces.identity import Recogniser

            self._recogniser = Recogniser(self.p["identity_model"])
        return self._recogniser

    def identities(self, reference: str | None = None):
        """A new video's `Identities` (face.identity: dlib, or a reference photo), else None."""
        from pipeline.faces.identity import Identities

        if reference is None and self.p["identity"] == "none":
            return None
        wanted = None if reference is None else self.describe_photo(reference)
        return Identities(self.recogniser, wanted, self.p["identity_threshold"])

    def describe_photo(self, path: str) -> np.ndarray:
        """The descriptor of the largest face of a reference photo (described once per file
        version)."""
        from pipeline.store import file_state

        key = tuple(file_state(path))
        if key not in self._photos:
            self._photos[key] = self._describe_photo(path)
        return self._photos[key]

    def _describe_photo(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise VideoError(
                f"{path}: the reference photo cannot be read ({err}); give a JPEG or PNG of "
                "the person to follow"
            ) from None
        faces = self.detect_full(image)
        if not faces:
            raise VideoError(
                f"{path}: no face found in the reference photo (min_face_size "
                f"{self.p['min_face_size']}); give a photo where the person's face is visible"
            )
        face = max(faces, key=lambda f: f.size)
        return self.recogniser(image, face.box)

    @property
    def cascade(self):
        """MTCNN's three networks (made on first use)."""
        if self._cascade is None:
            from pipeline.faces.mtcnn import Cascade

            self._cascade = Cascade(self.p["thresholds"], self.device)
        return self._cascade

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
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        keep = np.flatnonzero(scores >= self.p["min_confidence"])
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return [Face(boxes[i], float(scores[i]), landmarks[i], len(keep)) for i in keep]

    def detect_full(self, frame) -> list[Face]:
        """Search the whole frame (RGB (H, W, 3) or LazyFrame), downscaled to `detect_width`."""
        frame = frame if isinstance(frame, np.ndarray) else frame.rgb()
        scale = self.scale_for(frame.shape[1])
        min_face = max(12, round(self.p["min_face_size"] * scale))
        boxes, scores, landmarks = self.cascade.detect(self.shrink(frame, scale), min_face)
        return self._faces(boxes / scale, scores, landmarks / scale)

    def detect_near(self, frame, previous: Face) -> list[Face]:
        """Search a region around `previous` (of an RGB frame or a LazyFrame, of which only that
        region is converted), rescaled so the face is about ROI_FACE pixels."""
        import cv2

        size = previous.size
        cx, cy = previous.center
        half = ROI_MARGIN * size
        height, width = frame.shape[:2]
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(width, int(cx + half)), min(height, int(cy + half))
        if x1 - x0 < 12 or y1 - y0 < 12:
            return []
        if isinstance(frame, np.ndarray):
            region = frame[y0:y1, x0:x1]
        else:  # whole chroma samples: it may start a pixel before x0, y0 and end after x1, y1
            region, left, top = frame.region(x0, y0, x1, y1)
            region = region[y0 - top : y1 - top, x0 - left : x1 - left]
        scale = ROI_FACE / size
        crop = cv2.resize(
            region,
            (max(12, round((x1 - x0) * scale)), max(12, round((y1 - y0) * scale))),
            interpolation=cv2.INTER_AREA,
        )
        boxes, scores, landmarks = self.cascade.detect(crop, ROI_MIN_FACE)
        offset = np.array([x0, y0], np.float32)
        return self._faces(boxes / scale + np.tile(offset, 2), scores, landmarks / scale + offset)

    def follow(self, frame, previous: Face) -> Face | None:
        """MTCNN's last stage (O-net) alone on the square around `previous`, twice: its box
        regression moves the square onto the face, its score says whether a face is still
        there. None when the score is below `min_confidence` (or the square left the frame).
        About 1.5 ms, against ~5-10 for a search of the region around the face."""
        import cv2
        import torch

        onet = self.cascade.onet
        frame = frame if isinstance(frame, np.ndarray) else frame.rgb()
        box = np.asarray(previous.box, np.float64)
        height, width = frame.shape[:2]
        for _ in range(FOLLOW_STEPS):
            side = max(box[2] - box[0], box[3] - box[1])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
            x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
            if x1 - x0 < 12 or y1 - y0 < 12:
                return None
            patch = cv2.resize(frame[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA)
            data = torch.from_numpy(patch).permute(2, 0, 1)[None].float()
            with torch.inference_mode():
                reg, points, prob = onet(((data - 127.5) * 0.0078125).to(self.device))
            reg, points = reg[0].cpu().numpy(), points[0].cpu().numpy()
            w, h = x1 - x0, y1 - y0
            box = np.array([x0 + reg[0] * w, y0 + reg[1] * h, x1 + reg[2] * w, y1 + reg[3] * h])
            landmarks = np.stack([x0 + w * points[:5], y0 + h * points[5:]], axis=1)
        score = float(prob[0, 1])
        if score < self.p["min_confidence"]:
            return None
        return Face(box.astype(np.float32), score, landmarks.astype(np.float32), 1)

    def detect(self, frame, previous: Face | None, full: bool = False) -> list[Face]:
        """Near `previous` when there is one (and `full` is not asked): followed with O-net
        (`follow`), else searched in the region around it; a full search when neither finds the
        face continuing `previous`."""
        if previous is not None and not full:
            if self.p["follow"]:
                face = self.follow(frame, previous)
                if face is not None and iou(previous.box, face.box[None])[0] > 0.3:
                    return [face]
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
