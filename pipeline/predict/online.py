"""Prediction one frame at a time: the face and frontalize stages, the backbone(s) and the
fold models run causally on each new frame (what `pipeline.predict.stream` runs on a live source)."""

from __future__ import annotations

import json
from collections import deque

import numpy as np


class OnlineFaces:
    """The face and frontalize stages one frame at a time, causally (see the module doc);
    with a `reference` photo, only its person's face is taken."""

    def __init__(self, pre: dict, detector, reference: str | None = None):
        from pipeline.faces.tracking import Tracker
        from pipeline.frontalize import DEFAULTS as FRONT_DEFAULTS
        from pipeline.frontalize import Frontalizer

        front = {**FRONT_DEFAULTS, **pre["frontalize"]}
        if "points" not in pre["frontalize"]:  # trained before frontalize.points existed
            front["points"] = "mtcnn"
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
        from pipeline.faces.headpose import align_frame
        from pipeline.faces.landmarks import five_points

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
        from pipeline.backbones import build_backbone, exported
        from pipeline.common import ConfigError

        if predictor.task != "classify":
            raise ConfigError(
                f"{predictor.meta['model']}: a {predictor.task} model; live streams take "
                "classifiers (pipeline.predict draws a regress model's curves of a file)"
            )
        self.p = predictor
        self.length = int(predictor.meta["clip_length"])
        self.specs = []
        self.exports: dict[str, list[tuple[int, str]]] = {}  # backbone → its per-frame columns
        for pre in predictor.pres:
            spec = pre["backbone"]
            parts = []
            for part in spec.get("parts") or [spec]:
                key = json.dumps(part, sort_keys=True)
                if key not in predictor.backbones:
                    predictor.backbones[key] = build_backbone(
                        part["name"], part.get("params") or {}, part.get("checkpoint")
                    )
                if key not in self.exports:
                    self.exports[key] = exported(part["name"], predictor.backbones[key])
                parts.append(key)
            self.specs.append(parts)
        # the per-frame columns each line carries (blendshapes), once each
        self.columns = list(dict.fromkeys(n for cols in self.exports.values() for _, n in cols))
        self.values: dict[str, float] = {}  # this frame's
        self.every_frame = [hasattr(m, "frame_outputs") for m in predictor.models]
        self.reset()

    def reset(self) -> None:
        """A new stream: no face, no window, no person statistics."""
        self.faces = OnlineFaces(self.p.pre, self.p.detector, self.p.reference)
        self.windows = [deque(maxlen=self.length) for _ in self.p.pres]
        self.sums = [None] * len(self.p.pres)

    def warm_up(self) -> None:
        """Run every network once on a portrait (a window's worth of frames), then forget it:
        the first frames of the stream are not held up by first-call set-up (~2 s)."""
        import av

        from pipeline.datasets.demo import load_portrait
        from pipeline.video import LazyFrame

        image = np.ascontiguousarray(load_portrait("astronaut")[:, :, :3])
        frame = LazyFrame(av.VideoFrame.from_ndarray(image, format="rgb24"))
        for _ in range(self.length):
            self.step(frame)
        self.reset()

    def features(self, found: dict) -> list[np.ndarray] | None:
        """One (D,) feature row per fold for this frame; None before the first face. The
        backbones' per-frame columns (`self.columns`) go to `self.values`."""
        done: dict[str, np.ndarray] = {}
        self.values = {}
        rows = []
        for parts in self.specs:
            row = []
            for key in parts:
                if key not in done:
                    backbone = self.p.backbones[key]
                    if getattr(backbone, "reads", "frames") == "points":
                        if found["points"] is None:
                            return None
                        done[key] = backbone(found["points"][None])[0]
                    else:
                        if found["crop"] is None:
                            return None
                        done[key] = backbone(found["crop"][None])[0]
                    for i, name in self.exports[key]:
                        self.values[name] = float(done[key][i])
                row.append(np.asarray(done[key], np.float32).reshape(-1))
            rows.append(np.concatenate(row))
        return rows

    def calibrated(self, k: int, row: np.ndarray) -> np.ndarray:
        from pipeline.store import frame_sums, standardise, stats_of

        if self.p.normalize == "per_subject":  # this person's frames so far
            sums = frame_sums(row[None])
            self.sums[k] = sums if self.sums[k] is None else self.sums[k] + sums
            return standardise(row[None], *stats_of(self.sums[k]))[0]
        if self.p.stats is not None:
            return standardise(row[None], *self.p.stats[k])[0]
        return row

    def step(self, frame) -> tuple[dict, np.ndarray | None]:
        """Process one frame: (the face found or None, class probabilities or None)."""
        import torch

        found = self.faces(frame)
        rows = self.features(found)
        if rows is None:
            return found, None
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
        return found, (np.mean(probs, axis=0) if probs else None)
