"""A trained model with everything before it loaded once; one video at a time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.clips import average_windows
from pipeline.common import (
    ConfigError,
    VideoError,
    resolve_device,
    set_threads,
    write_csv_atomic,
    write_json_atomic,
)
from pipeline.faces.detector import Detector
from pipeline.faces.stage import torch_threads
from pipeline.predict.steps import (
    Backbones,
    aligned_features,
    face_track,
    find_checkpoints,
    load_models,
    model_digest,
    per_frame,
    video_stamp,
    window_probabilities,
    windows,
)
from pipeline.predict.timeline import Timeline
from pipeline.settings import Preprocessing
from pipeline.store import Calibration, frame_sums, pad_clip

log = logging.getLogger(__name__)


def check_calibration(pre: Preprocessing, calibration: Sequence[str]) -> None:
    """`--calibrate` videos are given exactly when the model was trained `calibrated`."""
    if pre.normalize == "calibrated" and not calibration:
        raise ConfigError(
            "this model was trained person-calibrated (normalize: calibrated): give one or more "
            "unlabelled videos of the same person with --calibrate VIDEO (not the video itself)"
        )
    if pre.normalize != "calibrated" and calibration:
        raise ConfigError(
            f"--calibrate is for models trained with normalize: calibrated; this one was "
            f"trained with normalize: {pre.normalize}, so the calibration videos would be ignored"
        )


class Predictor:
    """A trained model (one fold, or every fold as an ensemble) with everything before it
    loaded once: the face detector and landmarker, the backbone(s), the calibration
    statistics. `video(path, out)` predicts one video and writes its four files."""

    def __init__(
        self,
        model_dir: str,
        device: str = "auto",
        threads: int = 2,
        calibration: Sequence[str] = (),
        reference: str | None = None,
    ):
        self.device = resolve_device(device)
        self.threads = max(1, int(threads))
        set_threads(self.threads)
        self.checkpoints = find_checkpoints(model_dir)
        self.models, metas, self.pres = load_models(self.checkpoints, self.device)
        self.meta, self.metas = metas[0], metas
        self.task = self.meta.get("task", "classify")  # regress: values per frame
        self.pre, self.classes = self.pres[0], self.meta["classes"]
        self.normalize = self.pre.normalize
        check_calibration(self.pre, calibration)
        self.detector = Detector({**self.pre.face, "device": self.device})
        self.backbones = Backbones()
        self.pipelined = False  # run_batch: detection and the rest in two threads
        self.figure = None  # the Timeline, made for the first video
        self.digest = model_digest(self.checkpoints)
        self.calibration = [str(c) for c in calibration]
        self.calibrations = self.person(calibration)
        self.reference = reference  # a photo of the person to follow in every video

    def detect(self, video: str | Path, reference: str | None = None) -> tuple:
        """`face_track`'s face arrays, decode options, frame rate and kept frames; the person
        of the photo `reference` (else the predictor's) is followed. Run alone, detection gives
        torch one thread less and decodes ahead in the other, as the face stage does
        (`run_batch` sets the threads once for its two stages)."""
        path = Path(video)
        if not path.exists():
            raise VideoError(f"{video}: no such video file or frame folder")
        photo = reference or self.reference
        if self.pipelined:
            return face_track(str(path), self.pre, self.detector, photo)
        set_threads(torch_threads(self.threads))
        try:
            return face_track(str(path), self.pre, self.detector, photo)
        finally:
            set_threads(self.threads)

    def close(self) -> None:
        """Close the backbones' runtimes (MediaPipe's landmarker would complain at exit)."""
        self.backbones.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def person(self, calibration: Sequence[str]) -> list[Calibration]:
        """The person calibration the model was trained with, one per fold (`Calibration`):
        for `calibrated`, the statistics of `calibration`, other unlabelled videos of the same
        person (never the video itself), through the same fold's backbones; per_subject
        standardises a new video with its own frames (the person is a new subject)."""
        if self.normalize != "calibrated":
            return [Calibration(self.normalize) for _ in self.pres]
        sums = [0.0] * len(self.pres)
        for other in calibration:
            arrays, decode, _, decoded = face_track(str(other), self.pre, self.detector)
            features = aligned_features(
                str(other), self.pres, arrays, decode, self.backbones, decoded
            )
            sums = [total + frame_sums(f) for total, f in zip(sums, features, strict=True)]
        return [Calibration("calibrated", total) for total in sums]

    def features(self, path: str, found: tuple, columns: dict | None = None) -> list[np.ndarray]:
        """Per fold: the video's features, calibrated as in training (`columns` receives the
        backbones' per-frame columns, uncalibrated: see `aligned_features`)."""
        arrays, decode, _, decoded = found
        features = aligned_features(
            path, self.pres, arrays, decode, self.backbones, decoded, columns
        )
        return [calibrate(f) for calibrate, f in zip(self.calibrations, features, strict=True)]

    def video(self, video: str | Path, out_dir: str | Path) -> dict:
        """Predict one video into `out_dir`; returns the summary written to summary.json."""
        return self.finish(video, self.detect(video), out_dir)

    def finish(
        self, video: str | Path, found: tuple, out_dir, reference: str | None = None
    ) -> dict:
        """After `detect`: alignment, backbone(s), the model(s), the four files in out_dir
        (`reference`: the photo detect followed, recorded in the summary)."""
        path = Path(video)
        columns: dict[str, np.ndarray] = {}
        features = self.features(str(path), found, columns)
        arrays, _, fps, _ = found
        n = len(features[0])
        spans = windows(n, self.pre)
        length = int(self.meta["clip_length"])
        classes = self.classes
        if self.task == "regress":
            frame_probs = self.regress_values(features, spans, length, n)
            probs = np.stack([frame_probs[s:e].mean(0) for s, e in spans])
        else:
            probs = np.mean(
                [
                    window_probabilities(model, f, spans, length, self.device)
                    for model, f in zip(self.models, features, strict=True)
                ],
                axis=0,
            )
            frame_probs = per_frame(probs, spans, n)
        prefix = "" if self.task == "regress" else "p_"
        times = np.asarray(arrays["time"], dtype=float)
        if len(times) != n or not np.isfinite(times).all():
            times = np.arange(n) / fps
        valid = np.asarray(arrays["valid"], bool)[:n]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        win = pd.DataFrame(
            {
                "window": range(len(spans)),
                "start": [s for s, _ in spans],
                "stop": [e for _, e in spans],
                "start_s": [round(float(times[s]), 4) for s, _ in spans],
                "stop_s": [round(float(times[e - 1]) + 1.0 / fps, 4) for _, e in spans],
                "face_fraction": [round(float(valid[s:e].mean()), 4) for s, e in spans],
            }
        )
        frames = pd.DataFrame(
            {"frame": range(n), "time_s": np.round(times, 4), "face": valid.astype(int)}
        )
        if self.task != "regress":
            win["pred"] = [classes[i] for i in probs.argmax(1)]
            frames["pred"] = [classes[i] for i in frame_probs.argmax(1)]
        for k, c in enumerate(classes):
            win[f"{prefix}{c}"] = probs[:, k]
            frames[f"{prefix}{c}"] = frame_probs[:, k]
        for name, values in columns.items():  # blendshapes: empty where no face
            frames[name] = np.where(valid, values[:n], np.nan)
        video_probs = frame_probs.mean(0) if self.task == "regress" else probs.mean(0)
        values = {c: float(p) for c, p in zip(classes, video_probs, strict=True)}
        summary = {
            "video": str(path),
            "task": self.task,
            "prediction": "" if self.task == "regress" else classes[int(video_probs.argmax())],
            ("means" if self.task == "regress" else "probabilities"): values,
            "frames": n,
            "fps": fps,
            "face_frames": int(valid.sum()),
            "windows": len(spans),
            "model": self.meta["model"],
            "backbone": self.meta["backbone"],
            "checkpoints": [str(p) for p in self.checkpoints],
            "model_digest": self.digest,
            "video_stamp": video_stamp(path),
            "reference": str(reference or self.reference or "") or None,
            "normalize": self.normalize,
            "calibration": self.calibration,
            "classes": classes,
        }
        write_csv_atomic(out / "windows.csv", win)
        write_csv_atomic(out / "frames.csv", frames)
        title = (
            f"{path.name}: {self.meta['model']} / {self.meta['backbone']} "
            f"({len(self.models)} model(s))"
        )
        if self.figure is None:
            self.figure = Timeline(classes, prefix, self.limits(frame_probs))
        self.figure.draw(frames, title, out / "timeline.png")
        write_json_atomic(out / "summary.json", summary)  # last: its presence means done
        return summary

    def regress_values(self, features, spans, length: int, n: int) -> np.ndarray:
        """(n, D): every fold model's frame-wise values (scaled back to the labels' units), the
        windows covering a frame averaged, then the folds."""
        folds = []
        for model, f, meta in zip(self.models, features, self.metas, strict=True):
            x = torch.from_numpy(np.stack([pad_clip(f[s:e], length) for s, e in spans]))
            with torch.no_grad():  # the models are on self.device already (load_models)
                out = model(x.to(self.device)).cpu().numpy()
            out = out * np.asarray(meta["target_std"]) + np.asarray(meta["target_mean"])
            folds.append(average_windows(out, spans, n))
        return np.mean(folds, axis=0)

    def limits(self, values: np.ndarray) -> tuple[float, float]:
        """The timeline's value axis: probabilities 0–1; a regress run's labels' span (at least
        its training targets' mean ± 2 std, and 0–1 when that covers them)."""
        if self.task != "regress":
            return (0.0, 1.0)
        mean = np.asarray(self.meta["target_mean"])
        std = np.asarray(self.meta["target_std"])
        lo = float(min(np.nanmin(values), (mean - 2 * std).min(), 0.0))
        hi = float(max(np.nanmax(values), (mean + 2 * std).max(), 1.0 if lo >= 0 else 0.0))
        return (lo, hi)


def run(
    video: str,
    model_dir: str,
    out_dir: str,
    device: str = "auto",
    threads: int = 1,
    calibration: Sequence[str] = (),
    reference: str | None = None,
) -> dict:
    """Predict one video (following the person of the photo `reference`, if given); returns
    the summary written to summary.json."""
    if not Path(video).exists():
        raise ConfigError(f"{video}: no such video file or frame folder")
    with Predictor(model_dir, device, threads, calibration, reference) as predictor:
        return predictor.video(video, out_dir)
