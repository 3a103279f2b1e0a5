"""Should MediaPipe's own face detection serve as a face stage? Speed and agreement at equal CPU.

    .venv/bin/python bench/mediapipe_stage.py --dir ../shared/data/j-dev/videos --limit 10

Every side runs in this one process, pinned to one core (`os.sched_setaffinity`), torch and
OpenCV at one thread, over the same videos, each decoded by the side itself; the sides are
timed in turn, `--rounds` times (the machine drifts from minute to minute): medians and each
round's ratio are printed.

- `stage`: the face stage as the DAG runs it (`bench.faces.stage`: detect_faces then
  frontalize, MTCNN on key frames with tracking, dlib 68 landmarks, alignment, files written).
- `landmarker`: MediaPipe's Face Landmarker on every whole frame, in image mode (its detector,
  the 478-point mesh and the blendshapes): what a MediaPipe face stage would have to run to
  give the landmarks that alignment and the `geometry` backbone need.
- `detector`: MediaPipe's face detector alone (BlazeFace short range, the `face_detector.tflite`
  of the same bundle) on every whole frame: boxes only, no landmarks beyond six points.
- `blendshapes`: the `blendshapes` backbone on the stage's aligned crops (what it costs on top of
  the MTCNN stage).

Agreement, counted the same way for every side on every frame: a frame agrees with the stage
when both find a face whose boxes overlap with IoU >= 0.4 (MediaPipe's boxes are tighter than
MTCNN's), or when neither finds one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def videos_of(folder: str, limit: int):
    from bench.faces import table

    paths = sorted(str(p) for p in Path(folder).iterdir() if p.suffix in {".mp4", ".avi", ".mkv"})
    pick = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int))
    return table([paths[i] for i in pick])


def mesh_box(points: np.ndarray) -> np.ndarray:
    return np.array([*points[:, :2].min(0), *points[:, :2].max(0)], np.float32)


def run_landmarker(videos, mesh) -> dict[str, list]:
    from pipeline.video import iter_frames

    out = {}
    for vid, rec in videos.iterrows():
        boxes = []
        for frame in iter_frames(rec.path):
            face = mesh(frame)
            boxes.append(None if face is None else mesh_box(face.points))
        out[vid] = boxes
    return out


def run_detector(videos, detector) -> dict[str, list]:
    import mediapipe as mp

    from pipeline.video import iter_frames

    out = {}
    for vid, rec in videos.iterrows():
        boxes = []
        for frame in iter_frames(rec.path):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            found = detector.detect(image).detections
            if found:
                b = max(found, key=lambda d: d.categories[0].score).bounding_box
                boxes.append(
                    np.array(
                        [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height],
                        np.float32,
                    )
                )
            else:
                boxes.append(None)
        out[vid] = boxes
    return out


def run_blendshapes(aligned: Path, backbone) -> int:
    import h5py

    n = 0
    with h5py.File(aligned, "r") as f:
        for vid in f:
            frames = f[vid]["frames"]
            for start in range(0, len(frames), 64):
                n += len(backbone(frames[start : start + 64]))
    return n


def agreement(stage_faces: Path, other: dict[str, list]) -> dict:
    import h5py

    from bench.faces import box_iou

    frames = agree = only_stage = only_other = 0
    with h5py.File(stage_faces, "r") as f:
        for vid, boxes in other.items():
            valid, ours = f[vid]["valid"][:], f[vid]["boxes"][:]
            for t, box in enumerate(boxes[: len(valid)]):
                frames += 1
                if not valid[t] or box is None:
                    agree += (not valid[t]) and box is None
                    only_stage += bool(valid[t]) and box is None
                    only_other += (not valid[t]) and box is not None
                    continue
                agree += float(box_iou(ours[t], box[None])[0]) >= 0.4
    return {
        "agreement": agree / max(frames, 1),
        "face_stage_only": only_stage,
        "face_other_only": only_other,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a folder of videos")
    ap.add_argument("--limit", type=int, default=10, help="videos taken, evenly spaced")
    ap.add_argument("--rounds", type=int, default=3, help="times each side is timed, in turn")
    args = ap.parse_args()

    import cv2
    import torch
    from mediapipe.tasks.python import BaseOptions, vision

    from bench.faces import stage
    from pipeline import video
    from pipeline.backbones.mediapipe_face import Blendshapes
    from pipeline.faces.detector import DEFAULTS, Detector
    from pipeline.faces.facemesh import FaceMesh, model_path

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    video.DECODE_THREADS = 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-mediapipe-"))
    videos = videos_of(args.dir, args.limit)
    frames = int(videos.n_frames.sum())
    params = dict(DEFAULTS)
    detector = Detector(params)
    mesh = FaceMesh()
    with zipfile.ZipFile(model_path()) as bundle:
        (tmp / "face_detector.tflite").write_bytes(bundle.read("face_detector.tflite"))
    blaze = vision.FaceDetector.create_from_options(
        vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(tmp / "face_detector.tflite"))
        )
    )
    backbone = Blendshapes()
    stage(videos.iloc[:1], tmp / "warm", detector, params)  # every side warms up once
    run_landmarker(videos.iloc[:1], mesh)
    run_detector(videos.iloc[:1], blaze)

    sides = {
        "stage": lambda r: stage(videos, tmp / f"stage{r}", detector, params),
        "landmarker": lambda r: run_landmarker(videos, mesh),
        "detector": lambda r: run_detector(videos, blaze),
        "blendshapes": lambda r: run_blendshapes(tmp / "stage0" / "aligned.h5", backbone),
    }
    seconds: dict[str, list[float]] = {k: [] for k in sides}
    outputs: dict[str, object] = {}
    for r in range(args.rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            outputs[name] = fn(r)
            seconds[name].append(time.perf_counter() - t0)
    print(f"{len(videos)} videos, {frames} frames, one core, {args.rounds} rounds in turn\n")
    print(
        "| side | frames/s (median) | x the stage (median; each round) | agreement with the stage |"
    )
    print("|---|---|---|---|")
    for name in sides:
        fps = frames / float(np.median(seconds[name]))
        ratios = [s / o for s, o in zip(seconds["stage"], seconds[name], strict=True)]
        agree = ""
        if name in ("landmarker", "detector"):
            a = agreement(tmp / "stage0" / "faces.h5", outputs[name])
            agree = (
                f"{100 * a['agreement']:.1f} % (faces only the stage found: "
                f"{a['face_stage_only']}, only this side: {a['face_other_only']})"
            )
        print(
            f"| {name} | {fps:.1f} | {np.median(ratios):.2f} "
            f"({', '.join(f'{x:.2f}' for x in ratios)}) | {agree} |"
        )
    mesh.close()
    blaze.close()
    backbone.close()


if __name__ == "__main__":
    main()
