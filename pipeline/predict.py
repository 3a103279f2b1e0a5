"""Apply a trained model to new videos: emotion probabilities per window and per frame.

    python -m pipeline.predict VIDEO --model results/models/gru/hog --out predictions/clip1
    python -m pipeline.predict FOLDER SHEET.csv VIDEO... --model results/models/gru/hog --out DIR

VIDEO is a video file or a folder of frame images. `--model` is either one fold's folder
(`results/models/gru/hog/fold0`, holding `model.pt`) or a model's folder with every fold
(`results/models/gru/hog`): then the fold models form an ensemble whose probabilities are
averaged. Every step before the model repeats what the pipeline did for training, with the
settings stored in `model.pt`: decoding (target_fps), face detection, landmarks and
smoothing, alignment/frontalization, the backbone(s), clip windows (length, stride) and the
person calibration: for `normalize: per_subject`, standardisation with the video's own frames
(the person in the video is a new subject); for `normalize: calibrated`, with the frames of
other unlabelled videos of the same person given with `--calibrate`.

Outputs of one video (written atomically):

    windows.csv    one row per clip window: window, start, stop (frames), start_s, stop_s,
                   face_fraction, pred, p_<class>
    frames.csv     one row per frame: frame, time_s, face (found in that frame), pred and
                   p_<class> = mean of the windows covering the frame
    timeline.png   the per-frame probabilities over time, frames without a face shaded
    summary.json   the video's prediction (mean of the windows), the model(s), the classes

One video file or frame folder: its files go into `--out`, and a video in which no face is
found is an error naming the file (exit status 1), not an empty prediction.

Several inputs, a folder of videos (searched below for video files and frame folders) or a
CSV sheet (column `path`, relative to the sheet or absolute; optional `video_id`, `label`):
a batch. The networks are loaded once; each video's files go into `--out/<video_id>/` (ids
as the dataset stage derives them from the path) and `--out/summary.csv` holds one row per
video (video_id, path, label when the sheet has one, status done | skipped | failed,
prediction, frames, face_frames, windows, seconds, reason, p_<class>), rewritten after each
video. A video that cannot be used (undecodable, no face) is recorded as failed with its
reason (also in its folder's failed.json) and the batch goes on. Run the same command again
and it resumes: videos predicted by the same model (the same model.pt bytes) from the same
file (size, modification time) are skipped, as are earlier failures
unless `--retry-failed`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import (
    ConfigError,
    VideoError,
    atomic_path,
    resolve_device,
    run_main,
    set_threads,
    setup_logging,
    write_csv_atomic,
    write_json_atomic,
)

log = logging.getLogger(__name__)


def find_checkpoints(model_dir: str | Path) -> list[Path]:
    """model.pt of one fold folder, or of every fold folder below a model folder."""
    model_dir = Path(model_dir)
    if (model_dir / "model.pt").is_file():
        return [model_dir / "model.pt"]
    found = sorted(
        model_dir.glob("fold*/model.pt"), key=lambda p: int(p.parent.name.removeprefix("fold"))
    )
    if not found:
        raise ConfigError(
            f"{model_dir}: no model.pt here or in fold*/ below; give a trained model's folder, "
            "e.g. results/models/gru/hog (all folds) or results/models/gru/hog/fold0"
        )
    return found


def without_checkpoints(pre: dict) -> dict:
    """A model's preprocessing less the per-fold backbone checkpoints (which differ by fold)."""

    def strip(spec: dict) -> dict:
        out = {k: v for k, v in spec.items() if k != "checkpoint"}
        if "parts" in out:
            out["parts"] = [strip(part) for part in out["parts"]]
        return out

    return {**pre, "backbone": strip(pre["backbone"])}


def load_models(paths: list[Path], device: str) -> tuple[list, list[dict]]:
    """The models and their metadata; refuses folds trained differently (each fold may have
    its own per-fold backbone checkpoint)."""
    from pipeline.models import load_checkpoint

    models, metas = [], []
    for path in paths:
        model, meta = load_checkpoint(path, device)
        if "preprocessing" not in meta:
            raise ConfigError(
                f"{path}: this checkpoint does not record its preprocessing (trained before "
                "pipeline.predict existed); retrain it with `snakemake --forcerun train`"
            )
        if metas:
            first = metas[0]
            for key in ("classes", "model", "backbone", "input_shape"):
                if meta[key] != first[key]:
                    raise ConfigError(f"{path}: {key} differs from {paths[0]}'s; not one model")
            if without_checkpoints(meta["preprocessing"]) != without_checkpoints(
                first["preprocessing"]
            ):
                raise ConfigError(f"{path}: preprocessing differs from {paths[0]}'s; not one model")
        models.append(model)
        metas.append(meta)
    return models, metas


KEEP_BYTES = 512 * 2**20  # decoded frames kept from detection for alignment, per video


class Kept:
    """The frames of one decoding pass, kept for a second pass while they fit in `budget`
    bytes (counted as YUV planes plus the grey and RGB arrays a frame may cache): alignment
    then reuses detection's frames instead of decoding the video again. A longer video keeps
    none (`frames` None) and is decoded twice, as the face stage does."""

    def __init__(self, source, budget: int = KEEP_BYTES):
        self.source, self.budget, self.used = source, budget, 0
        self.frames: list | None = []

    def __iter__(self):
        for frame in self.source:
            if self.frames is not None:
                height, width = frame.shape
                self.used += int(height * width * 5.5)
                if self.used > self.budget:
                    self.frames = None
                else:
                    self.frames.append(frame)
            yield frame


def face_track(path: str, pre: dict, detector) -> tuple[dict, dict, float, list | None]:
    """Probe and detect: the face arrays of every frame, the decode options, the frame rate
    and the decoded frames when they were few enough to keep (see `Kept`)."""
    from pipeline.faces import detect_video
    from pipeline.video import iter_lazy, probe

    decode = {
        "target_fps": pre["decode"].get("target_fps"),
        "folder_fps": float(pre["decode"].get("folder_fps") or 30.0),
    }
    # not decoded twice: detection finds the video's end
    info = probe(path, decode["folder_fps"], decode["target_fps"], count=False)
    face = detector.p
    kept = Kept(iter_lazy(path, **decode))
    arrays = detect_video(detector, path, info.n_frames or None, info.fps, decode, kept)
    if not arrays["valid"].any():
        raise VideoError(
            f"{path}: no usable face in any of its {len(arrays['valid'])} frames (detector "
            f"{face.get('detector', 'mtcnn')}, min_face_size {face.get('min_face_size')}); "
            "check that a face is visible and large enough, or lower face.min_face_size "
            "when training"
        )
    return arrays, decode, info.fps, kept.frames


def aligned_features(
    path: str,
    pres: list[dict],
    arrays: dict,
    decode: dict,
    fps: float,
    backbones: dict,
    decoded: list | None = None,
) -> list[np.ndarray]:
    """Aligned crops (in memory, frontalized once) → the backbone features (T, ...) of one
    video for each preprocessing of `pres` (the folds of one model: the same but for their
    per-fold backbone checkpoints); a backbone shared by several is run once. `backbones`
    keeps the networks built, by their settings, for the next video; `decoded`, the video's
    frames when detection kept them (else it is decoded again)."""
    import io

    import h5py

    from pipeline.backbones import build_backbone
    from pipeline.features import extract, source
    from pipeline.frontalize import DEFAULTS as FRONT_DEFAULTS
    from pipeline.frontalize import Frontalizer, frontalize_video

    front = {**FRONT_DEFAULTS, **pres[0]["frontalize"]}
    if "points" not in pres[0]["frontalize"]:  # trained before frontalize.points existed
        front["points"] = "mtcnn"
    size = int(front["crop_size"])
    with h5py.File(io.BytesIO(), "w") as mem:
        det = mem.create_group("faces")
        det.attrs["cropped"] = bool(arrays.get("cropped", False))
        det.attrs["fps"] = fps
        for name, values in arrays.items():
            if name != "cropped":
                det.create_dataset(name, data=values)
        group = mem.create_group("aligned")
        pose = frontalize_video(
            path,
            det,
            size,
            front["method"],
            Frontalizer(size, front["symmetry"]),
            decode,
            group,
            points5=front["points"],
            decoded=None if decoded is None else iter(decoded),
        )
        for name, values in pose.items():  # `points` feeds the geometry backbone
            group.create_dataset(name, data=values)
        done: dict[str, np.ndarray] = {}
        features = []
        for pre in pres:
            spec = pre["backbone"]
            parts = []
            for part in spec.get("parts") or [spec]:  # a fused backbone: every part
                key = json.dumps(part, sort_keys=True)
                if key not in done:
                    if key not in backbones:
                        backbones[key] = build_backbone(
                            part["name"], part.get("params") or {}, part.get("checkpoint")
                        )
                    backbone = backbones[key]
                    out = mem.create_group(f"features{len(done)}")
                    done[key] = extract(backbone, source(backbone, group, path), out, "video")[:]
                parts.append(done[key])
            features.append(np.concatenate(parts, axis=-1))
    return features


def windows(n_frames: int, pre: dict) -> list[tuple[int, int]]:
    from pipeline.clips import DEFAULTS, window

    clips = {**DEFAULTS, **pre.get("clips", {})}
    return window(n_frames, int(clips["length"]), int(clips["stride"]))


def window_probabilities(model, features: np.ndarray, spans, length: int, device: str):
    """(W, K) probabilities of every window under one (fold's) model."""
    import torch

    from pipeline.engine import predict
    from pipeline.store import pad_clip

    x = torch.from_numpy(np.stack([pad_clip(features[s:e], length) for s, e in spans]))
    return predict(model, x, device)


def per_frame(probs: np.ndarray, spans, n_frames: int) -> np.ndarray:
    """(T, K): each frame gets the mean probability of the windows that cover it."""
    total = np.zeros((n_frames, probs.shape[1]))
    count = np.zeros(n_frames)
    for p, (s, e) in zip(probs, spans, strict=True):
        total[s:e] += p
        count[s:e] += 1
    return total / np.maximum(count, 1)[:, None]


# matplotlib's tab10, the report's class colours
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip


def nice_step(span: float, ticks: int = 8) -> float:
    """A round tick step (1, 2 or 5 × 10^k) giving about `ticks` ticks over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


class Timeline:
    """timeline.png: the per-frame probabilities over time, one line per class, frames without
    a face shaded, a legend. Drawn with Pillow at twice the size and reduced (antialiased):
    ~10 ms a video where matplotlib took ~100 ms, which in a batch of short clips was a
    quarter of the work after detection."""

    WIDTH, HEIGHT, SCALE = 900, 340, 2
    LEFT, RIGHT, TOP, BOTTOM = 62, 150, 30, 44  # margins: axis labels, legend, title, time

    def __init__(self, classes: list[str]):
        from PIL import ImageFont

        self.classes = classes
        s = self.SCALE
        self.font = ImageFont.load_default(size=11 * s)
        self.small = ImageFont.load_default(size=10 * s)

    def draw(self, frames: pd.DataFrame, title: str, out: Path) -> None:
        from PIL import Image, ImageDraw

        s = self.SCALE
        w, h = self.WIDTH * s, self.HEIGHT * s
        x0, x1 = self.LEFT * s, w - self.RIGHT * s
        y0, y1 = self.TOP * s, h - self.BOTTOM * s
        t = frames.time_s.to_numpy(float)
        start, stop = float(t[0]), float(t[-1]) if len(t) > 1 and t[-1] > t[0] else t[0] + 1

        def px(times):
            return x0 + (np.asarray(times) - start) / (stop - start) * (x1 - x0)

        def py(p):
            return y1 - np.asarray(p) * (y1 - y0)

        image = Image.new("RGB", (w, h), "white")
        pen = ImageDraw.Draw(image)
        missing = ~frames.face.to_numpy(bool)
        if missing.any():  # runs of frames without a face, each frame its step around it
            step = (stop - start) / max(len(t) - 1, 1)
            edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(int), 0]))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                left, right = px(t[a] - step / 2), px(t[b - 1] + step / 2)
                pen.rectangle([max(x0, left), y0, min(x1, right), y1], fill=(229, 229, 229))
        for p in (0, 0.25, 0.5, 0.75, 1.0):  # grid and y ticks
            y = py(p)
            pen.line([(x0, y), (x1, y)], fill=(225, 225, 225), width=s)
            pen.text((x0 - 6 * s, y), f"{p:g}", fill="black", font=self.small, anchor="rm")
        step = nice_step(stop - start)
        for tick in np.arange(np.ceil(start / step) * step, stop + step / 1e6, step):
            x = px(tick)
            pen.line([(x, y0), (x, y1)], fill=(225, 225, 225), width=s)
            pen.text((x, y1 + 5 * s), f"{tick:g}", fill="black", font=self.small, anchor="mt")
        for k, c in enumerate(self.classes):
            ys = py(frames[f"p_{c}"].to_numpy(float)).tolist()
            points = list(zip(px(t).tolist(), ys, strict=True))
            colour = PALETTE[k % len(PALETTE)]
            if len(points) > 1:
                pen.line(points, fill=colour, width=3 * s // 2 + 1)
            else:
                x, y = points[0]
                pen.ellipse([x - 2 * s, y - 2 * s, x + 2 * s, y + 2 * s], fill=colour)
            ly = y0 + (6 + 16 * k) * s  # legend
            pen.line([(x1 + 12 * s, ly), (x1 + 32 * s, ly)], fill=colour, width=2 * s)
            pen.text((x1 + 38 * s, ly), c, fill="black", font=self.small, anchor="lm")
        if missing.any():
            ly = y0 + (6 + 16 * len(self.classes)) * s
            pen.rectangle([x1 + 12 * s, ly - 5 * s, x1 + 32 * s, ly + 5 * s], fill=(229, 229, 229))
            pen.text((x1 + 38 * s, ly), "no face", fill="black", font=self.small, anchor="lm")
        pen.rectangle([x0, y0, x1, y1], outline="black", width=s)
        pen.text(((x0 + x1) / 2, h - 6 * s), "time (s)", fill="black", font=self.font, anchor="md")
        pen.text(((x0 + x1) / 2, y0 - 8 * s), title, fill="black", font=self.font, anchor="md")
        label = Image.new("RGB", (120 * s, 16 * s), "white")
        ImageDraw.Draw(label).text(
            (60 * s, 8 * s), "probability", fill="black", font=self.font, anchor="mm"
        )
        image.paste(label.rotate(90, expand=True), (4 * s, int((y0 + y1) / 2 - 60 * s)))
        small = image.reduce(s)  # box filter: the antialiasing
        with atomic_path(out) as tmp:
            small.save(tmp, format="PNG", compress_level=1)


def check_calibration(pre: dict, calibration: Sequence[str]) -> None:
    """`--calibrate` videos are given exactly when the model was trained `calibrated`."""
    normalize = pre.get("normalize", "none")
    if normalize == "calibrated" and not calibration:
        raise ConfigError(
            "this model was trained person-calibrated (normalize: calibrated): give one or more "
            "unlabelled videos of the same person with --calibrate VIDEO (not the video itself)"
        )
    if normalize != "calibrated" and calibration:
        raise ConfigError(
            f"--calibrate is for models trained with normalize: calibrated; this one was "
            f"trained with normalize: {normalize}, so the calibration videos would be ignored"
        )


def calibration_stats(predictor: Predictor, calibration: Sequence[str]) -> list[tuple] | None:
    """The person calibration the model was trained with, as (mean, std) per fold: None for
    `normalize: none` and `per_subject` (the video's own frames: the person is a new subject,
    see `calibrated`); for `calibrated`, the statistics of `calibration`, other unlabelled
    videos of the same person (never the video itself), through the same fold's backbones."""
    from pipeline.store import frame_stats

    if predictor.normalize != "calibrated":
        return None
    others = []  # per calibration video: its features for every fold
    for other in calibration:
        arrays, decode, fps, decoded = face_track(str(other), predictor.pre, predictor.detector)
        others.append(
            aligned_features(
                str(other), predictor.pres, arrays, decode, fps, predictor.backbones, decoded
            )
        )
    return [frame_stats([per_fold[k] for per_fold in others]) for k in range(len(predictor.pres))]


def model_digest(checkpoints: Sequence[Path]) -> str:
    """A hash of the model.pt files' bytes: a retrained model at the same path differs."""
    import hashlib

    h = hashlib.sha256()
    for path in checkpoints:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def video_stamp(path: Path) -> list[int]:
    """Size and modification time of a video file (or of a frame folder's files): a video
    replaced under the same name is predicted again."""
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        stats = [f.stat() for f in files if f.is_file()]
    except OSError:  # gone since: not the video predicted before
        return []
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


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
    ):
        from pipeline.detector import Detector

        self.device = resolve_device(device)
        self.threads = max(1, int(threads))
        set_threads(self.threads)
        self.checkpoints = find_checkpoints(model_dir)
        self.models, metas = load_models(self.checkpoints, self.device)
        self.meta = metas[0]
        self.pres = [m["preprocessing"] for m in metas]
        self.pre, self.classes = self.pres[0], self.meta["classes"]
        self.normalize = self.pre.get("normalize", "none")
        check_calibration(self.pre, calibration)
        self.detector = Detector({**self.pre["face"], "device": self.device})
        self.backbones: dict = {}
        self.pipelined = False  # run_batch: detection and the rest in two threads
        self.figure = None  # the Timeline, made for the first video
        self.digest = model_digest(self.checkpoints)
        self.calibration = [str(c) for c in calibration]
        self.stats = calibration_stats(self, calibration)

    def detect(self, video: str | Path) -> tuple:
        """`face_track`'s face arrays, decode options, frame rate and kept frames. Run alone,
        detection gives torch one thread less and decodes ahead in the other, as the face stage
        does (`run_batch` sets the threads once for its two stages)."""
        from pipeline.faces import torch_threads

        path = Path(video)
        if not path.exists():
            raise VideoError(f"{video}: no such video file or frame folder")
        if self.pipelined:
            return face_track(str(path), self.pre, self.detector)
        set_threads(torch_threads(self.threads))
        try:
            return face_track(str(path), self.pre, self.detector)
        finally:
            set_threads(self.threads)

    def features(self, path: str, found: tuple) -> list[np.ndarray]:
        """Per fold: the video's features, calibrated as in training."""
        from pipeline.store import frame_stats, standardise

        arrays, decode, fps, decoded = found
        features = aligned_features(path, self.pres, arrays, decode, fps, self.backbones, decoded)
        if self.normalize == "per_subject":
            features = [standardise(f, *frame_stats([f])) for f in features]
        elif self.stats is not None:
            features = [standardise(f, *st) for f, st in zip(features, self.stats, strict=True)]
        return features

    def video(self, video: str | Path, out_dir: str | Path) -> dict:
        """Predict one video into `out_dir`; returns the summary written to summary.json."""
        return self.finish(video, self.detect(video), out_dir)

    def finish(self, video: str | Path, found: tuple, out_dir) -> dict:
        """After `detect`: alignment, backbone(s), the model(s), the four files in out_dir."""
        path = Path(video)
        features = self.features(str(path), found)
        arrays, _, fps, _ = found
        n = len(features[0])
        spans = windows(n, self.pre)
        length = int(self.meta["clip_length"])
        classes = self.classes
        probs = np.mean(
            [
                window_probabilities(model, f, spans, length, self.device)
                for model, f in zip(self.models, features, strict=True)
            ],
            axis=0,
        )
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
                "pred": [classes[i] for i in probs.argmax(1)],
            }
        )
        frame_probs = per_frame(probs, spans, n)
        frames = pd.DataFrame(
            {
                "frame": range(n),
                "time_s": np.round(times, 4),
                "face": valid.astype(int),
                "pred": [classes[i] for i in frame_probs.argmax(1)],
            }
        )
        for k, c in enumerate(classes):
            win[f"p_{c}"] = probs[:, k]
            frames[f"p_{c}"] = frame_probs[:, k]
        video_probs = probs.mean(0)
        summary = {
            "video": str(path),
            "prediction": classes[int(video_probs.argmax())],
            "probabilities": {c: float(p) for c, p in zip(classes, video_probs, strict=True)},
            "frames": n,
            "fps": fps,
            "face_frames": int(valid.sum()),
            "windows": len(spans),
            "model": self.meta["model"],
            "backbone": self.meta["backbone"],
            "checkpoints": [str(p) for p in self.checkpoints],
            "model_digest": self.digest,
            "video_stamp": video_stamp(path),
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
            self.figure = Timeline(classes)
        self.figure.draw(frames, title, out / "timeline.png")
        write_json_atomic(out / "summary.json", summary)  # last: its presence means done
        return summary


def run(
    video: str,
    model_dir: str,
    out_dir: str,
    device: str = "auto",
    threads: int = 1,
    calibration: Sequence[str] = (),
) -> dict:
    """Predict one video; returns the summary written to summary.json."""
    if not Path(video).exists():
        raise ConfigError(f"{video}: no such video file or frame folder")
    return Predictor(model_dir, device, threads, calibration).video(video, out_dir)


# --- batches: several files, folders of videos, sheets ---------------------------------------

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_frame_folder(path: Path) -> bool:
    from pipeline.video import IMAGE_SUFFIXES

    return path.is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in path.iterdir()
    )


def folder_videos(folder: Path) -> list[Path]:
    """The videos below `folder`: files with a video suffix and folders of frame images (not
    descended into), in natural order of their paths."""
    from pipeline.video import natural_key

    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in list(dirnames):
            if is_frame_folder(here / name):
                found.append(here / name)
                dirnames.remove(name)
        found += [here / f for f in filenames if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(folder))))


def sheet_videos(sheet: Path) -> list[tuple[str, Path, str | None]]:
    """(id, path, label or None) of every row of a sheet: a CSV with a `path` column (relative
    to the sheet's folder, or absolute), optional `video_id` and `label`."""
    from pipeline.common import read_csv
    from pipeline.datasets.sheet import ID_PATTERN, derive_id

    try:
        table = read_csv(sheet)
    except Exception as err:  # pandas raises several types for a broken CSV
        raise ConfigError(f"{sheet}: cannot read it as CSV ({err})") from None
    if "path" not in table.columns:
        raise ConfigError(
            f"{sheet}: no `path` column (columns: {', '.join(table.columns)}); a sheet to "
            "predict lists one video per row in `path`, optionally `video_id` and `label`"
        )
    rows, problems = [], []
    for i, row in enumerate(table.itertuples(index=False), start=2):
        written = str(row.path).strip()
        if not written:
            problems.append(f"line {i}: empty path")
            continue
        vid = str(getattr(row, "video_id", "") or "").strip() or derive_id(written)
        if not ID_PATTERN.match(vid):
            problems.append(f"line {i}: video_id {vid!r} may hold only letters, digits, _ - .")
        label = str(row.label) if "label" in table.columns else None
        rows.append((vid, sheet.parent / written, label))
    if problems:
        raise ConfigError(f"{sheet}: " + "; ".join(problems))
    return rows


def expand_inputs(inputs: Sequence[str]) -> list[tuple[str, Path, str | None]]:
    """(id, path, label) of every video the inputs name: video files and frame folders as
    they are, folders of videos by their videos (ids from the path inside the folder), CSV
    sheets by their rows. Ids are made unique (`_2`, `_3`, … on a repeat); a file named twice
    is predicted once."""
    from pipeline.datasets.sheet import derive_id

    items: list[tuple[str, Path, str | None]] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"{given}: no such video file, folder or sheet")
        if path.is_file() and path.suffix.lower() == ".csv":
            items += sheet_videos(path)
        elif path.is_file() or is_frame_folder(path):
            items.append((derive_id(path.name), path, None))
        else:
            found = folder_videos(path)
            if not found:
                raise ConfigError(
                    f"{given}: no videos in this folder (files ending "
                    f"{' '.join(VIDEO_SUFFIXES)}, or folders of frame images)"
                )
            items += [(derive_id(str(p.relative_to(path))), p, None) for p in found]
    out, seen_ids, seen_files = [], set(), set()
    for vid, path, label in items:
        key = os.path.realpath(path)
        if key in seen_files:
            log.warning("%s: named twice; predicted once", path)
            continue
        seen_files.add(key)
        unique, k = vid, 1
        while unique in seen_ids:
            k += 1
            unique = f"{vid}_{k}"
        seen_ids.add(unique)
        out.append((unique, path, label))
    return out


def batch_row(
    vid: str,
    path: Path,
    label: str | None,
    status: str,
    summary: dict | None,
    reason: str,
    seconds: float,
    classes: list[str],
) -> dict:
    """summary.csv's row of one video."""
    row = {"video_id": vid, "path": str(path)}
    if label is not None:
        row["label"] = label
    row.update(
        status=status,
        prediction=(summary or {}).get("prediction", ""),
        frames=(summary or {}).get("frames", 0),
        face_frames=(summary or {}).get("face_frames", 0),
        windows=(summary or {}).get("windows", 0),
        seconds=round(seconds, 2),
        reason=reason,
    )
    for c in classes:
        row[f"p_{c}"] = (summary or {}).get("probabilities", {}).get(c, np.nan)
    return row


def run_batch(
    inputs: Sequence[str],
    model_dir: str,
    out_dir: str,
    device: str = "auto",
    threads: int = 2,
    calibration: Sequence[str] = (),
    retry_failed: bool = False,
    progress: bool | None = None,
    predictor: Predictor | None = None,
) -> pd.DataFrame:
    """Predict every video the inputs name with one Predictor (networks loaded once) into
    `out_dir/<video_id>/`, and write `out_dir/summary.csv` (one row per video, in input order,
    rewritten as videos finish). Resumable: a video whose folder holds a summary.json of the
    same model and file is skipped; one that failed before (failed.json) is skipped too
    unless `retry_failed`. A video that cannot be used (undecodable, no face…) is recorded
    with its reason (status `failed`) and the batch goes on.

    With two threads or more the batch runs in two stages: while a worker thread aligns,
    extracts, predicts and writes one video, the main thread detects the faces of the next
    (the stages release the GIL in decoding, torch, OpenCV and the HOG histograms); torch
    gets one thread less, as in the face stage."""
    import time
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm

    from pipeline.faces import torch_threads

    items = expand_inputs(inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if predictor is None:  # else one already loaded (device, threads, calibration its own)
        predictor = Predictor(model_dir, device, threads, calibration)
    pipelined = predictor.threads >= 2
    rows: dict[int, dict] = {}
    counts = {"done": 0, "skipped": 0, "failed": 0}
    # progress None: a bar when stderr is a terminal
    bar = tqdm(
        total=len(items), desc="predict", unit="video",
        disable=None if progress is None else not progress,
    )  # fmt: skip

    def record(
        k: int, status: str, summary: dict | None, reason: str, t0: float, known: bool = False
    ) -> None:
        vid, path, label = items[k]
        if status == "failed" and not known:  # a new failure (else failed.json has it)
            (out / vid).mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / vid / "failed.json", {"video": str(path), "reason": reason})
            log.warning("%s", reason)
        counts[status] += 1
        seconds = time.perf_counter() - t0
        rows[k] = batch_row(vid, path, label, status, summary, reason, seconds, predictor.classes)
        write_csv_atomic(out / "summary.csv", pd.DataFrame([rows[i] for i in sorted(rows)]))
        bar.set_postfix(counts)
        bar.update()

    def failure(path: Path, err: Exception) -> str:
        if isinstance(err, VideoError):
            return str(err)
        log.error("%s: unexpected error", path, exc_info=err)  # the batch goes on
        return f"{path}: unexpected {type(err).__name__}: {err}"

    def collect(job: tuple[int, Future, float] | None) -> None:
        if job is None:
            return
        k, future, t0 = job
        try:
            record(k, "done", future.result(), "", t0)
        except Exception as err:
            record(k, "failed", None, failure(items[k][1], err), t0)

    predictor.pipelined = pipelined
    if pipelined:
        set_threads(torch_threads(predictor.threads))
    pending = None  # the video the worker finishes while the next one is detected
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="predict") as pool:
            for k, (vid, path, _) in enumerate(items):
                folder = out / vid
                t0 = time.perf_counter()
                earlier = _read_json(folder / "summary.json")
                before = _read_json(folder / "failed.json")
                if (
                    earlier.get("video") == str(path)
                    and earlier.get("model_digest") == predictor.digest
                    and earlier.get("video_stamp") == video_stamp(path)
                ):
                    record(k, "skipped", earlier, "predicted earlier", t0)
                    continue
                if before.get("video") == str(path) and not retry_failed:
                    reason = before.get("reason", "failed earlier")
                    record(k, "failed", None, reason, t0, known=True)
                    continue
                (folder / "failed.json").unlink(missing_ok=True)
                try:
                    found = predictor.detect(path)
                except Exception as err:
                    record(k, "failed", None, failure(path, err), t0)
                    continue
                if not pipelined:
                    collect((k, _done(predictor.finish, path, found, folder), t0))
                    continue
                collect(pending)
                pending = (k, pool.submit(predictor.finish, path, found, folder), t0)
            collect(pending)
    finally:
        predictor.pipelined = False
        set_threads(predictor.threads)
        bar.close()
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    write_csv_atomic(out / "summary.csv", table)
    log.info(
        "%d videos: %d predicted, %d skipped (predicted earlier), %d failed%s; wrote %s",
        len(items),
        counts["done"],
        counts["skipped"],
        counts["failed"],
        "" if retry_failed or not counts["failed"] else " (--retry-failed retries them)",
        out / "summary.csv",
    )
    return table


def _done(fn, *args):
    """fn(*args) run here, as a finished Future (the batch's one-thread path)."""
    from concurrent.futures import Future

    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as err:
        future.set_exception(err)
    return future


def _read_json(path: Path) -> dict:
    """The JSON object in `path`; {} when it is missing or unreadable (a run cut short)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def single(inputs: Sequence[str]) -> bool:
    """One video file or frame folder: its four files go straight into --out."""
    if len(inputs) != 1:
        return False
    path = Path(inputs[0])
    return (path.is_file() and path.suffix.lower() != ".csv") or is_frame_folder(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Emotion probabilities per window and per frame of new videos."
    )
    ap.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files, frame folders, folders of videos, or CSV sheets (column `path`)",
    )
    ap.add_argument(
        "--model",
        required=True,
        help="a trained model's folder: results/models/MODEL/BACKBONE (every fold, averaged) "
        "or one fold's folder",
    )
    ap.add_argument(
        "--out",
        required=True,
        help="folder for windows.csv, frames.csv, timeline.png, summary.json (several videos: "
        "one subfolder per video and summary.csv)",
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--calibrate",
        nargs="+",
        default=[],
        metavar="VIDEO",
        help="models trained with normalize: calibrated: unlabelled video(s) of the same person "
        "to calibrate on (not the video itself)",
    )
    ap.add_argument(
        "--retry-failed",
        action="store_true",
        help="several videos: predict again the videos that failed in an earlier run",
    )
    ap.add_argument("--no-progress", action="store_true", help="several videos: no progress bar")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if not single(args.videos):
        table = run_batch(
            args.videos,
            args.model,
            args.out,
            args.device,
            args.threads,
            args.calibrate,
            args.retry_failed,
            False if args.no_progress else None,
        )
        print(
            json.dumps(
                {
                    "videos": len(table),
                    **{s: int((table.status == s).sum()) for s in ("done", "skipped", "failed")},
                    "out": args.out,
                }
            )
        )
        return
    summary = run(args.videos[0], args.model, args.out, args.device, args.threads, args.calibrate)
    log.info(
        "%s: %s (%s) from %d windows; wrote %s",
        args.videos[0],
        summary["prediction"],
        ", ".join(f"{c} {p:.2f}" for c, p in summary["probabilities"].items()),
        summary["windows"],
        args.out,
    )
    print(json.dumps({"prediction": summary["prediction"], "out": args.out}))


if __name__ == "__main__":
    run_main(main)
