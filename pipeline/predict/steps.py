"""The steps of prediction: the fold models, the face track, aligned features, windows."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.backbones import build_backbone, exported
from pipeline.clips import DEFAULTS as CLIP_DEFAULTS
from pipeline.clips import average_windows, window
from pipeline.common import ConfigError, VideoError
from pipeline.engine import predict
from pipeline.faces.stage import detect_video
from pipeline.features import features_of, source
from pipeline.frontalize import DEFAULTS as FRONT_DEFAULTS
from pipeline.frontalize import Frontalizer, frontalize_video
from pipeline.models import load_checkpoint
from pipeline.settings import BackboneSpec, Preprocessing
from pipeline.store import pad_clip
from pipeline.video import iter_lazy, probe

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
        what = "does not exist" if not model_dir.exists() else "has no model.pt, nor fold*/ below"
        trained = trained_models(model_dir)
        listing = (
            f"The trained models near it: {', '.join(map(str, trained[:12]))}"
            + (f" and {len(trained) - 12} more" if len(trained) > 12 else "")
            if trained
            else "No trained model is near it or in results/models: train one with snakemake first"
        )
        raise ConfigError(
            f"{model_dir}: {what}; give a trained model's folder, results/models/MODEL/BACKBONE "
            f"(all folds) or one fold's folder below it. {listing}"
        )
    return found


def trained_models(model_dir: Path) -> list[Path]:
    """The model folders (those with fold*/model.pt) under the nearest existing folder above
    `model_dir` (at most two levels up) and under results/models, for a message (not the
    per-fold backbones of results/backbones/, which are no classifier)."""
    roots = [Path("results/models")]
    for parent in list(model_dir.parents)[:3]:
        if parent.is_dir() and parent != Path("."):
            roots.insert(0, parent)
            break
    found = {
        path.parent.parent
        for root in roots
        if root.is_dir()
        for depth in ("fold*", "*/fold*", "*/*/fold*")
        for path in root.glob(f"{depth}/model.pt")
        if "backbones" not in path.parts
    }
    return sorted(found)


def load_models(paths: list[Path], device: str) -> tuple[list, list[dict], list[Preprocessing]]:
    """The models, their metadata and preprocessing; refuses folds trained differently (each
    fold may have its own per-fold backbone checkpoint)."""
    models, metas, pres = [], [], []
    for path in paths:
        model, meta = load_checkpoint(path, device)
        if "preprocessing" not in meta:
            raise ConfigError(
                f"{path}: this checkpoint does not record its preprocessing (trained before "
                "pipeline.predict existed); retrain it with `snakemake --forcerun train`"
            )
        pre = Preprocessing.from_dict(meta["preprocessing"])
        if metas:
            first = metas[0]
            for key in ("classes", "model", "backbone", "input_shape"):
                if meta[key] != first[key]:
                    raise ConfigError(f"{path}: {key} differs from {paths[0]}'s; not one model")
            if not pre.same_model_as(pres[0]):
                raise ConfigError(f"{path}: preprocessing differs from {paths[0]}'s; not one model")
        models.append(model)
        metas.append(meta)
        pres.append(pre)
    return models, metas, pres


class Backbones:
    """The backbone networks of a model's preprocessing, each built once (by its
    `BackboneSpec.key`) and shared by its folds, the videos of a batch and the live loop."""

    def __init__(self):
        self.built: dict[str, object] = {}
        self.exports: dict[str, list[tuple[int, str]]] = {}

    def __call__(self, spec: BackboneSpec):
        key = spec.key()
        if key not in self.built:
            self.built[key] = build_backbone(spec.name, spec.params, spec.checkpoint)
            # once: describe() may hash the backbone's model file, far too slow per frame
            self.exports[key] = exported(spec.name, self.built[key])
        return self.built[key]

    def columns(self, spec: BackboneSpec) -> list[tuple[int, str]]:
        """The per-frame columns the backbone exports (index in its output, name)."""
        self(spec)
        return self.exports[spec.key()]

    def close(self) -> None:
        """Close the backbones that hold a runtime (MediaPipe's landmarker)."""
        for backbone in self.built.values():
            if hasattr(backbone, "close"):
                backbone.close()
        self.built.clear()
        self.exports.clear()


def per_fold(pres: list[Preprocessing], compute: Callable[[BackboneSpec], np.ndarray | None]):
    """The features of every fold's backbone, its fused parts side by side: `compute(spec)`
    runs once per distinct backbone (folds share those without per-fold weights). None when
    `compute` returns None for one of them."""
    done: dict[str, np.ndarray] = {}
    out = []
    for pre in pres:
        parts = []
        for spec in pre.backbone.leaves():
            key = spec.key()
            if key not in done:
                done[key] = compute(spec)
                if done[key] is None:
                    return None
            parts.append(done[key])
        out.append(np.concatenate(parts, axis=-1))
    return out


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


def face_track(
    path: str, pre: Preprocessing, detector, reference: str | None = None
) -> tuple[dict, dict, float, list | None]:
    """Probe and detect: the face arrays of every frame, the decode options, the frame rate
    and the decoded frames when they were few enough to keep (see `Kept`); `reference`: a
    photo of the person to follow."""
    decode = {
        "target_fps": pre.decode.get("target_fps"),
        "folder_fps": float(pre.decode.get("folder_fps") or 30.0),
    }
    # not decoded twice: detection finds the video's end
    info = probe(path, decode["folder_fps"], decode["target_fps"], count=False)
    face = detector.p
    kept = Kept(iter_lazy(path, **decode))
    arrays = detect_video(detector, path, info.n_frames or None, info.fps, decode, kept, reference)
    if not arrays["valid"].any() and reference:
        raise VideoError(
            f"{path}: the person of the reference photo {reference} is not seen in any of its "
            f"{len(arrays['valid'])} frames; check the photo, or raise face.identity_threshold "
            "when training"
        )
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
    pres: list[Preprocessing],
    arrays: dict,
    decode: dict,
    backbones: Backbones,
    decoded: list | None = None,
    columns: dict | None = None,
) -> list[np.ndarray]:
    """Aligned crops (in memory, frontalized once) → the backbone features (T, ...) of one
    video for each preprocessing of `pres` (the folds of one model: the same but for their
    per-fold backbone checkpoints); a backbone shared by several is run once. `backbones`
    keeps the networks built for the next video; `decoded`, the video's frames when detection
    kept them (else it is decoded again); `columns`, if given, receives the per-frame columns
    the backbones export ("blendshapes:jawOpen" → (T,) values)."""
    front = {**FRONT_DEFAULTS, **pres[0].frontalize}
    size = int(front["crop_size"])
    aligned: dict[str, np.ndarray] = {}

    def allocate(shape: tuple[int, ...]) -> np.ndarray:
        aligned["frames"] = np.empty(shape, np.uint8)
        return aligned["frames"]

    pose = frontalize_video(
        path,
        arrays,
        size,
        front["method"],
        Frontalizer(size, front["symmetry"]),
        decode,
        allocate,
        points5=front["points"],
        decoded=None if decoded is None else iter(decoded),
        cropped=bool(arrays.get("cropped", False)),
    )
    aligned.update(pose)  # `points` feeds the geometry backbone

    def compute(spec: BackboneSpec) -> np.ndarray:
        backbone = backbones(spec)
        out = features_of(backbone, source(backbone, aligned, path))
        if columns is not None:
            for i, name in backbones.columns(spec):
                columns[name] = out[:, i].astype(np.float32)
        return out

    return per_fold(pres, compute)


def windows(n_frames: int, pre: Preprocessing) -> list[tuple[int, int]]:
    clips = {**CLIP_DEFAULTS, **pre.clips}
    return window(n_frames, int(clips["length"]), int(clips["stride"]))


def window_probabilities(model, features: np.ndarray, spans, length: int, device: str):
    """(W, K) probabilities of every window under one (fold's) model."""
    x = torch.from_numpy(np.stack([pad_clip(features[s:e], length) for s, e in spans]))
    return predict(model, x, device)


def per_frame(probs: np.ndarray, spans, n_frames: int) -> np.ndarray:
    """(T, K): each frame gets the mean probability of the windows that cover it (the
    windows of `windows` cover every frame)."""
    return average_windows(probs, spans, n_frames)


def model_digest(checkpoints: Sequence[Path]) -> str:
    """A hash of the model.pt files' bytes: a retrained model at the same path differs."""

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
