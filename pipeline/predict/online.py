"""Prediction one frame at a time: the face and frontalize stages, the backbone(s) and the
fold models run causally on each new frame (what `pipeline.predict.stream` runs on a live source)."""

from __future__ import annotations

from collections import deque

import av
import numpy as np
import torch

from pipeline.common import ConfigError
from pipeline.datasets.demo import load_portrait
from pipeline.faces.headpose import align_frame
from pipeline.faces.landmarks import five_points
from pipeline.faces.tracking import Tracker
from pipeline.features import as_stored
from pipeline.frontalize import DEFAULTS as FRONT_DEFAULTS
from pipeline.frontalize import Frontalizer
from pipeline.predict.steps import per_fold
from pipeline.settings import Preprocessing
from pipeline.store import frame_sums
from pipeline.video import LazyFrame


class OnlineFaces:
    """The face and frontalize stages one frame at a time, causally (see the module doc);
    with a `reference` photo, only its person's face is taken."""

    def __init__(self, pre: Preprocessing, detector, reference: str | None = None):
        front = {**FRONT_DEFAULTS, **pre.frontalize}
        self.size, self.method, self.points5 = (
            int(front["crop_size"]),
            front["method"],
            front["points"],
        )
        self.frontalizer = Frontalizer(self.size, front["symmetry"])
        self.detector, self.tracker = detector, Tracker(detector.identities(reference))
        self.full_every = max(int(detector.p["detect_every"]), int(detector.p["full_every"]))
        self.previous = None
        self.t, self.last_full = -1, -(10**9)
        self.crop = self.points = None  # the last face's, held through frames without one

    def __call__(self, frame) -> dict:
        self.t += 1
        full = self.t - self.last_full >= self.full_every
        faces = self.detector.detect(frame, self.previous, full=full)
        if full or self.previous is None:
            self.last_full = self.t
        self.tracker.link(faces, frame)
        face = self.tracker.choose(self.t, faces, frame.shape)
        self.tracker.others.clear()  # a stream has no end: keep no history
        self.previous = face
        if face is None:
            return {"face": None, "crop": self.crop, "points": self.points}
        five = face.landmarks
        lm68 = None
        if self.detector.landmarker is not None:
            lm68 = self.detector.landmarker(frame.grey(), face.box)
            if self.points5 == "dlib":
                five = five_points(lm68)
        crop = None
        if lm68 is not None:
            posed = self.frontalizer.poses(lm68[None], frame.shape, render=self.method == "hassner")
            if posed["ok"][0]:
                self.points = posed["points"][0]
                if self.method == "hassner":
                    crop = self.frontalizer.render(
                        frame,
                        posed["render_rot"][0],
                        posed["render_tvec"][0],
                        posed["matrix"],
                        posed["render_seen"][0],
                    )
        if crop is None:
            crop, _ = align_frame(frame, five, self.size)
        self.crop = crop
        return {"face": face, "crop": crop, "points": self.points}


class Live:
    """A Predictor's networks applied frame by frame: features into a rolling window per fold,
    the fold models on it, their probabilities averaged."""

    def __init__(self, predictor):
        if predictor.task != "classify":
            raise ConfigError(
                f"{predictor.meta['model']}: a {predictor.task} model; live streams take "
                "classifiers (pipeline.predict draws a regress model's curves of a file)"
            )
        self.p = predictor
        self.length = int(predictor.meta["clip_length"])
        specs = {s.key(): s for pre in predictor.pres for s in pre.backbone.leaves()}
        # the per-frame columns each line carries (blendshapes), once each
        exports = [predictor.backbones.columns(spec) for spec in specs.values()]
        self.columns = list(dict.fromkeys(name for cols in exports for _, name in cols))
        self.values: dict[str, float] = {}  # this frame's
        self.every_frame = [hasattr(m, "frame_outputs") for m in predictor.models]
        self.reset()

    def reset(self) -> None:
        """A new stream: no face, no window, no person statistics."""
        self.faces = OnlineFaces(self.p.pre, self.p.detector, self.p.reference)
        self.windows = [deque(maxlen=self.length) for _ in self.p.pres]
        self.sums = [0.0] * len(self.p.pres)  # per_subject: this person's frames so far

    def warm_up(self) -> None:
        """Run every network once on a portrait (a window's worth of frames), then forget it:
        the first frames of the stream are not held up by first-call set-up (~2 s)."""
        image = np.ascontiguousarray(load_portrait("astronaut")[:, :, :3])
        frame = LazyFrame(av.VideoFrame.from_ndarray(image, format="rgb24"))
        for _ in range(self.length):
            self.step(frame)
        self.reset()

    def features(self, found: dict) -> list[np.ndarray] | None:
        """One (D,) feature row per fold for this frame; None before the first face. The
        backbones' per-frame columns (`self.columns`) go to `self.values`."""
        self.values = {}

        def compute(spec) -> np.ndarray | None:
            backbone = self.p.backbones(spec)
            reads = getattr(backbone, "reads", "frames")
            frames = found["points"] if reads == "points" else found["crop"]
            if frames is None:
                return None
            out = backbone(frames[None])[0]
            for i, name in self.p.backbones.columns(spec):
                self.values[name] = float(out[i])
            return as_stored(backbone, out).astype(np.float32).reshape(-1)

        return per_fold(self.p.pres, compute)

    def calibrated(self, k: int, row: np.ndarray) -> np.ndarray:
        """Fold k's person calibration (`Calibration`); per_subject: this person's frames so
        far, this one included."""
        if self.p.normalize == "per_subject":
            self.sums[k] = self.sums[k] + frame_sums(row[None])
        return self.p.calibrations[k](row[None], self.sums[k])[0]

    def step(self, frame) -> tuple[dict, np.ndarray | None]:
        """Process one frame: (the face found or None, class probabilities or None)."""
        found = self.faces(frame)
        return found, self.advance(found)

    def advance(self, found: dict) -> np.ndarray | None:
        """The models on the window that ends with this frame's face (`found`: its aligned
        crop and points): class probabilities, or None before a window is full."""
        rows = self.features(found)
        if rows is None:
            return None
        for k, row in enumerate(rows):
            self.windows[k].append(self.calibrated(k, row))
        probs = []
        for k, model in enumerate(self.p.models):
            window = self.windows[k]
            if not self.every_frame[k] and len(window) < self.length:
                continue
            x = torch.from_numpy(np.stack(window)[None]).to(self.p.device)
            with torch.no_grad():
                if self.every_frame[k]:
                    logits = model.frame_outputs(x)[0][:, -1]
                else:
                    logits = model(x)
            probs.append(torch.softmax(logits, 1)[0].cpu().numpy())
        return np.mean(probs, axis=0) if probs else None
