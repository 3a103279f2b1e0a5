"""Apply a trained model to a new video: emotion probabilities per window and per frame.

    python -m pipeline.predict VIDEO --model results/models/gru/hog --out predictions/clip1

VIDEO is a video file or a folder of frame images. `--model` is either one fold's folder
(`results/models/gru/hog/fold0`, holding `model.pt`) or a model's folder with every fold
(`results/models/gru/hog`): then the fold models form an ensemble whose probabilities are
averaged. Every step before the model repeats what the pipeline did for training, with the
settings stored in `model.pt`: decoding (target_fps), face detection, landmarks and
smoothing, alignment/frontalization, the backbone(s), clip windows (length, stride) and the
person calibration: for `normalize: per_subject`, standardisation with the video's own frames
(the person in the video is a new subject); for `normalize: calibrated`, with the frames of
other unlabelled videos of the same person given with `--calibrate`.

Outputs in `--out` (written atomically):

    windows.csv    one row per clip window: window, start, stop (frames), start_s, stop_s,
                   face_fraction, pred, p_<class>
    frames.csv     one row per frame: frame, time_s, face (found in that frame), pred and
                   p_<class> = mean of the windows covering the frame
    timeline.png   the per-frame probabilities over time, frames without a face shaded
    summary.json   the video's prediction (mean of the windows), the model(s), the classes

A video in which no face is found is an error naming the file (exit status 1), not an
empty prediction.
"""

from __future__ import annotations

import argparse
import json
import logging
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


def face_track(path: str, pre: dict, device: str) -> tuple[dict, dict, float]:
    """Probe and detect: the face arrays of every frame, the decode options and the frame rate."""
    from pipeline.detector import Detector
    from pipeline.faces import detect_video
    from pipeline.video import probe

    decode = {
        "target_fps": pre["decode"].get("target_fps"),
        "folder_fps": float(pre["decode"].get("folder_fps") or 30.0),
    }
    info = probe(path, decode["folder_fps"], decode["target_fps"])
    face = {**pre["face"], "device": device}
    arrays = detect_video(Detector(face), path, info.n_frames, info.fps, decode)
    if not arrays["valid"].any():
        raise VideoError(
            f"{path}: no usable face in any of its {len(arrays['valid'])} frames (detector "
            f"{face.get('detector', 'mtcnn')}, min_face_size {face.get('min_face_size')}); "
            "check that a face is visible and large enough, or lower face.min_face_size "
            "when training"
        )
    return arrays, decode, info.fps


def aligned_features(
    path: str, pres: list[dict], arrays: dict, decode: dict, fps: float
) -> list[np.ndarray]:
    """Aligned crops (in memory, frontalized once) → the backbone features (T, ...) of one
    video for each preprocessing of `pres` (the folds of one model: the same but for their
    per-fold backbone checkpoints); a backbone shared by several is run once."""
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
                    backbone = build_backbone(
                        part["name"], part.get("params") or {}, part.get("checkpoint")
                    )
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


def timeline(frames: pd.DataFrame, classes: list[str], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    t = frames.time_s.to_numpy()
    for k, c in enumerate(classes):
        ax.plot(t, frames[f"p_{c}"], lw=1.5, color=f"C{k % 10}", label=c)
    missing = ~frames.face.to_numpy(bool)
    if missing.any():
        ax.fill_between(
            t, 0, 1, where=missing, color="grey", alpha=0.2, step="mid", label="no face"
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(t[0], t[-1] if len(t) > 1 else t[0] + 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


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


def calibrate(
    features: list[np.ndarray], pres: list[dict], calibration: Sequence[str], device: str
) -> list[np.ndarray]:
    """The person calibration the model was trained with, for each fold's features: none;
    per_subject (the video's own frames: the person is a new subject); calibrated (the
    statistics of `calibration`, other unlabelled videos of the same person, never the video
    itself, through the same fold's backbones)."""
    from pipeline.store import frame_stats, standardise

    normalize = pres[0].get("normalize", "none")
    if normalize == "per_subject":
        return [standardise(f, *frame_stats([f])) for f in features]
    if normalize != "calibrated":
        return features
    others = []  # per calibration video: its features for every fold
    for other in calibration:
        arrays, decode, fps = face_track(str(other), pres[0], device)
        others.append(aligned_features(str(other), pres, arrays, decode, fps))
    return [
        standardise(f, *frame_stats([per_fold[k] for per_fold in others]))
        for k, f in enumerate(features)
    ]


def run(
    video: str,
    model_dir: str,
    out_dir: str,
    device: str = "auto",
    threads: int = 1,
    calibration: Sequence[str] = (),
) -> dict:
    """Predict one video; returns the summary written to summary.json."""
    path = Path(video)
    if not path.exists():
        raise ConfigError(f"{video}: no such video file or frame folder")
    device = resolve_device(device)
    set_threads(threads)
    checkpoints = find_checkpoints(model_dir)
    models, metas = load_models(checkpoints, device)
    meta = metas[0]
    pres = [m["preprocessing"] for m in metas]
    pre, classes = pres[0], meta["classes"]
    check_calibration(pre, calibration)
    arrays, decode, fps = face_track(str(path), pre, device)
    features = aligned_features(str(path), pres, arrays, decode, fps)
    n = len(features[0])
    features = calibrate(features, pres, calibration, device)
    spans = windows(n, pre)
    length = int(meta["clip_length"])
    probs = np.mean(
        [
            window_probabilities(model, f, spans, length, device)
            for model, f in zip(models, features, strict=True)
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
        "model": meta["model"],
        "backbone": meta["backbone"],
        "checkpoints": [str(p) for p in checkpoints],
        "normalize": pre.get("normalize", "none"),
        "calibration": [str(c) for c in calibration],
        "classes": classes,
    }
    write_csv_atomic(out / "windows.csv", win)
    write_csv_atomic(out / "frames.csv", frames)
    title = f"{path.name}: {meta['model']} / {meta['backbone']} ({len(models)} model(s))"
    timeline(frames, classes, title, out / "timeline.png")
    write_json_atomic(out / "summary.json", summary)
    return summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Emotion probabilities per window and per frame of a new video."
    )
    ap.add_argument("video", help="a video file or a folder of frame images")
    ap.add_argument(
        "--model",
        required=True,
        help="a trained model's folder: results/models/MODEL/BACKBONE (every fold, averaged) "
        "or one fold's folder",
    )
    ap.add_argument("--out", required=True, help="folder for windows.csv, frames.csv, timeline.png")
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
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    summary = run(args.video, args.model, args.out, args.device, args.threads, args.calibrate)
    log.info(
        "%s: %s (%s) from %d windows; wrote %s",
        args.video,
        summary["prediction"],
        ", ".join(f"{c} {p:.2f}" for c, p in summary["probabilities"].items()),
        summary["windows"],
        args.out,
    )
    print(json.dumps({"prediction": summary["prediction"], "out": args.out}))


if __name__ == "__main__":
    run_main(main)
