"""Benchmark of the face stage (decode, detect, align) against the naive MTCNN loop.

    .venv/bin/python bench/faces.py [--frames 100] [--videos 4] [--jobs 2] [--long-seconds 180]

1. Throughput on 640×480 demo-style videos, all on the same 2 cores. The pipeline's face stage
   (downscaled, strided MTCNN with tracking and interpolation, dlib 68 landmarks on every frame,
   smoothing, similarity alignment with head pose, crops written to HDF5) runs as the DAG runs
   it: `--jobs` shard processes of one thread each. It is also timed as one process (2 torch
   threads), and with hassner frontalization (one process). The naive loop is full-resolution
   `MTCNN().detect` on every frame, default settings, 2 torch threads. Prints frames/s, the
   ratio and both detection rates.
2. Peak memory (max RSS of a fresh process) of the face stage on a 10-second and a long video.

Targets (issue 3): ratio >= 8, pipeline >= 60 frames/s, detection rate not below the naive
loop's, peak memory of the long video within 10 % of the short one's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.datasets import demo  # noqa: E402
from pipeline.video import iter_frames, write_video  # noqa: E402

SIZE = (640, 480)


def render(subject: int, emotion: str, n: int) -> list[np.ndarray]:
    return demo.render_subject(subject, emotion, n, SIZE, np.random.default_rng([subject, n]))


def face_stage(path: str, detector=None, method: str = "similarity") -> tuple[int, int]:
    """The pipeline's face stage on one video, default settings (MTCNN, dlib 68 landmarks,
    smoothing; frontalization with pose, written to an in-memory HDF5 file as the stage
    writes its shard): (frames, frames with a face)."""
    import h5py

    from pipeline.detector import Detector
    from pipeline.faces import detect_video
    from pipeline.frontalize import Frontalizer, frontalize_video

    arrays = detect_video(detector or Detector({}), path)
    arrays.pop("cropped", None)
    with h5py.File(f"mem-{id(arrays)}.h5", "w", driver="core", backing_store=False) as f:
        det = f.create_group("faces")
        for name, array in arrays.items():
            det.create_dataset(name, data=array)
        frontalize_video(path, det, 112, method, Frontalizer(112), {}, f.create_group("out"))
    return len(arrays["valid"]), int(arrays["valid"].sum())


def naive(path: str, net) -> tuple[int, int]:
    """Full-resolution MTCNN on every frame, largest face."""
    n = found = 0
    for frame in iter_frames(path):
        boxes, _ = net.detect(frame)
        n += 1
        found += boxes is not None
    return n, found


def peak_memory(path: str) -> float:
    """Max RSS (MiB) of a fresh process that runs the face stage on `path`."""
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[2]);"
        "import torch; torch.set_num_threads(2);"
        "from bench.faces import face_stage; face_stage(sys.argv[1]);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path, str(ROOT)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


_WORKER: dict = {}


def _worker_init(warmup: str) -> None:
    """A shard job: one torch thread, its own detector, warmed up (model loading is not
    throughput)."""
    import torch

    from pipeline import video
    from pipeline.detector import Detector

    torch.set_num_threads(1)
    video.DECODE_THREADS = 1
    _WORKER["detector"] = Detector({})
    face_stage(warmup, _WORKER["detector"])


def _worker_run(path: str) -> tuple[int, int]:
    return face_stage(path, _WORKER["detector"])


def sharded(paths: list[str], jobs: int) -> tuple[float, list[tuple[int, int]]]:
    """Wall time of the face stage as the DAG runs it: `jobs` one-thread shard processes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(jobs, initializer=_worker_init, initargs=(paths[0],)) as pool:
        pool.map(_worker_run, [paths[0]] * jobs, chunksize=1)  # every worker is up
        t0 = time.perf_counter()
        out = pool.map(_worker_run, paths, chunksize=1)
        return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100, help="frames per throughput video")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2, help="parallel shard jobs (= cores)")
    ap.add_argument("--long-seconds", type=int, default=180, help="0: skip the memory part")
    args = ap.parse_args()

    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    paths = []
    for i in range(args.videos):
        path = tmp / f"v{i}.mp4"
        write_video(path, render(i, demo.EMOTIONS[i % 6], args.frames), fps=30)
        paths.append(str(path))

    from pipeline.detector import Detector

    detector = Detector({})  # the stage builds one per shard; the naive loop one net
    net = MTCNN(keep_all=True)
    face_stage(paths[0], detector)  # warm-up: model loading is not throughput
    naive(paths[0], net)

    t0 = time.perf_counter()
    ours = [face_stage(p, detector) for p in paths]
    t_one = time.perf_counter() - t0
    t_ours, ours = sharded(paths, args.jobs)
    t0 = time.perf_counter()
    [face_stage(p, detector, "hassner") for p in paths]
    t_hassner = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = [naive(p, net) for p in paths]
    t_base = time.perf_counter() - t0
    frames = sum(n for n, _ in ours)
    result = {
        "frames": frames,
        "pipeline_fps": frames / t_ours,
        "pipeline_one_process_fps": frames / t_one,
        "naive_fps": frames / t_base,
        "pipeline_hassner_fps": frames / t_hassner,
        "speedup": t_base / t_ours,
        "pipeline_detection_rate": sum(f for _, f in ours) / frames,
        "naive_detection_rate": sum(f for _, f in base) / frames,
    }

    if args.long_seconds > 0:  # memory: a 10-second video and a long one (10 s looped)
        result.update(memory(tmp, args.long_seconds))
    report(result)


def memory(tmp: Path, seconds: int) -> dict:
    clip = render(0, "happiness", 300)
    short, long = tmp / "short.mp4", tmp / "long.mp4"
    write_video(short, clip, fps=30)
    write_video(long, (frame for _ in range(max(1, seconds // 10)) for frame in clip), fps=30)
    out = {"peak_mib_10s": peak_memory(str(short)), f"peak_mib_{seconds}s": peak_memory(str(long))}
    out["memory_ratio"] = out[f"peak_mib_{seconds}s"] / out["peak_mib_10s"]
    return out


def report(result: dict) -> None:
    print(
        json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2
        )
    )
    line = (
        f"face stage: {result['pipeline_fps']:.1f} frames/s vs naive {result['naive_fps']:.1f} "
        f"-> {result['speedup']:.1f}x faster; detection {result['pipeline_detection_rate']:.3f} vs "
        f"{result['naive_detection_rate']:.3f}; one process {result['pipeline_one_process_fps']:.1f} "
        f"frames/s ({result['pipeline_one_process_fps'] / result['naive_fps']:.1f}x), with hassner "
        f"{result['pipeline_hassner_fps']:.1f} frames/s"
    )
    if "memory_ratio" in result:
        line += f"; peak memory long/short = {result['memory_ratio']:.3f}"
    print(line)


if __name__ == "__main__":
    main()
