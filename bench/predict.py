"""Benchmark of batch prediction against the face stage, both in one process at equal threads.

    .venv/bin/python bench/predict.py [--videos 20] [--frames 100] [--model results/models/gru/hog]
    .venv/bin/python bench/predict.py --dir ../shared/data/j-dev/videos --videos 20

Videos: `--videos` generated 640×480 demo-style videos of `--frames` frames, or that many
videos of a folder given with `--dir` (evenly spaced in name order).

Sides, each in a fresh process with `--threads` threads that loads its networks and warms up
on the first video before a common start, timed `--rounds` times in turn (the machine's speed
drifts):

- the face stage as the DAG runs it on one shard (`detect_faces` then `frontalize`, shard
  files, resume parts and montages on disk), with the model's face and frontalize settings;
- `pipeline.predict`'s batch (`run_batch`: one Predictor, networks loaded once) on the same
  videos: decode, detect, align in memory, backbone, model, four files per video and
  summary.csv. It does all the face stage does but write shards, and then the features and the
  prediction.

Printed: frames/s of each side, the ratio batch/stage (target of issue 17: >= 0.8), and the
cost of the one-call-per-video way (a fresh `python -m pipeline.predict` process per video,
`--per-call` videos) for comparison. Throughput does not depend on the weights: without
`--model`, the bench saves an untrained `gru` on `hog` with config.yaml's settings (the
demo's preprocessing) and uses that.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faces import render, table  # noqa: E402
from pipeline.datasets import demo  # noqa: E402
from pipeline.encode import write_video  # noqa: E402


def untrained_model(folder: Path, name: str = "gru") -> Path:
    """model.pt of an untrained `name` (default gru) on hog, with config.yaml's preprocessing
    (as the DAG's `get_preprocessing` stores it) and the demo's classes."""
    import torch
    import yaml

    from pipeline.backbones import build_backbone
    from pipeline.models import build_model
    from pipeline.settings import Preprocessing

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    hog = config["backbones"]["hog"] or {}
    size = int(config["frontalize"]["crop_size"])
    features = build_backbone("hog", hog)(np.zeros((1, size, size, 3), np.uint8))
    length = int(config["clips"]["length"])
    shape = (length, *features.shape[1:])
    params = dict(config["models"].get(name) or {})
    model = build_model(name, len(demo.EMOTIONS), shape, params)
    meta = {
        "model": name,
        "backbone": "hog",
        "fold": 0,
        "classes": list(demo.EMOTIONS),
        "params": params,
        "input_shape": list(shape),
        "clip_length": length,
        "normalize": "none",
        "preprocessing": Preprocessing.from_config(config, "hog", "none").to_dict(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, folder / "model.pt")
    return folder


def stage(videos, workdir: Path, detector, pre) -> None:
    """The face stage on one shard with the model's settings, files on disk."""
    from pipeline import frontalize
    from pipeline.faces.stage import detect_shard

    workdir.mkdir(parents=True, exist_ok=True)
    faces, aligned = workdir / "faces.h5", workdir / "aligned.h5"
    detect_shard(videos.reset_index(drop=True), str(faces), pre.face, "fail", detector)
    front = {**frontalize.DEFAULTS, **pre.frontalize}
    frontalize.frontalize_shard(
        videos, str(faces), str(aligned), workdir / "montages", front, "fail"
    )


def _worker(side: str, videos, model: str, threads: int, workdir: str, barrier, queue) -> None:
    from pipeline import predict, video
    from pipeline.common import set_threads
    from pipeline.faces.stage import torch_threads

    video.DECODE_THREADS = threads
    work = Path(workdir)
    if side == "stage":
        from pipeline.faces.detector import Detector

        set_threads(torch_threads(threads))  # as the DAG's face jobs
        _, _, pres = predict.load_models(predict.find_checkpoints(model), "cpu")
        pre = pres[0]
        detector = Detector({**pre.face, "device": "cpu"})
        stage(videos.iloc[:1], work / "warm", detector, pre)

        def run():
            stage(videos, work / "run", detector, pre)
    else:
        predictor = predict.Predictor(model, "cpu", threads)
        predictor.video(videos.path.iloc[0], work / "warm")

        def run():
            predict.run_batch(
                list(videos.path), model, str(work / "run"), progress=False, predictor=predictor
            )

    barrier.wait()
    run()
    queue.put(time.perf_counter())


def _guarded(*args) -> None:
    try:
        _worker(*args)
    except BaseException:
        args[-2].abort()  # the barrier: nobody waits for a worker that died
        raise


def timed(side: str, videos, model: str, threads: int, workdir: Path) -> float:
    """Wall time of one side over all videos, from the common start after its warm-up."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    proc = ctx.Process(
        target=_guarded, args=(side, videos, model, threads, str(workdir), barrier, queue)
    )
    proc.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        proc.join()
        raise RuntimeError(f"the {side} worker failed (see its traceback above)") from None
    t0 = time.perf_counter()
    end = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"the {side} worker failed (exit {proc.exitcode})")
    return end - t0


def per_call(paths: list[str], model: str, threads: int, workdir: Path) -> float:
    """Seconds per video of one fresh `python -m pipeline.predict` process per video."""
    t0 = time.perf_counter()
    for i, path in enumerate(paths):
        subprocess.run(
            [sys.executable, "-m", "pipeline.predict", path, "--model", model,
             "--out", str(workdir / f"call{i}"), "--threads", str(threads)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    return (time.perf_counter() - t0) / len(paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="a folder of videos (default: generated 640×480 ones)")
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--frames", type=int, default=100, help="frames per generated video")
    ap.add_argument("--model", help="a trained model's folder (default: an untrained gru/hog)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-call", type=int, default=3, help="videos run one process each")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        if args.dir:
            files = sorted(p for p in Path(args.dir).iterdir() if p.suffix.lower() == ".mp4")
            pick = np.unique(np.linspace(0, len(files) - 1, min(args.videos, len(files))).round())
            paths = [str(files[int(i)].resolve()) for i in pick]
        else:
            paths = []
            for i in range(args.videos):
                path = tmp / f"v{i:02d}.mp4"
                write_video(path, render(i % 2, demo.EMOTIONS[i % 6], args.frames), fps=30)
                paths.append(str(path))
        model = str(Path(args.model).resolve()) if args.model else str(untrained_model(tmp / "m"))
        videos = table(paths)
        frames = int(videos.n_frames.sum())
        rounds = []
        for r in range(args.rounds):
            work = tmp / f"round{r}"
            t_stage = timed("stage", videos, model, args.threads, work / "stage")
            t_batch = timed("batch", videos, model, args.threads, work / "batch")
            rounds.append((t_stage, t_batch))
            shutil.rmtree(work, ignore_errors=True)
        rounds = np.array(rounds)
        t_stage, t_batch = np.median(rounds, axis=0)
        ratios = rounds[:, 0] / rounds[:, 1]
        call = per_call(paths[: args.per_call], model, args.threads, tmp) if args.per_call else 0
        result = {
            "videos": len(paths),
            "frames": frames,
            "size": f"{int(videos.width.iloc[0])}x{int(videos.height.iloc[0])}",
            "model": "untrained gru/hog (config.yaml)" if not args.model else args.model,
            "threads": args.threads,
            "face_stage_fps": frames / t_stage,
            "batch_predict_fps": frames / t_batch,
            "ratio_batch_to_stage": float(np.median(ratios)),
            "ratio_rounds": [round(float(x), 3) for x in ratios],
            "batch_seconds_per_video": t_batch / len(paths),
            "one_call_per_video_seconds": call,
        }
        print(
            json.dumps(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2
            )
        )
        print(
            f"batch prediction of {len(paths)} videos {result['size']}: "
            f"{result['batch_predict_fps']:.1f} frames/s, {result['ratio_batch_to_stage']:.2f}x "
            f"the face stage ({result['face_stage_fps']:.1f} frames/s) in one process at "
            f"{args.threads} threads; {result['batch_seconds_per_video']:.2f} s per video in the "
            f"batch against {call:.2f} s with one process per video"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
