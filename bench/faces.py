"""Benchmark of the face stage (decode, detect, landmarks, align, write) against the naive loop.

    .venv/bin/python bench/faces.py [--videos 4] [--frames 100] [--long-seconds 180]
    .venv/bin/python bench/faces.py --dir ../shared/data/j-dev/videos --limit 10 --long-seconds 0

Videos: `--videos` generated 640×480 demo-style videos of `--frames` frames, or the first
`--limit` videos (evenly spaced in name order) of a folder given with `--dir`.

1. Speed, both sides run the same way. The face stage is what the DAG runs: `detect_faces`
   then `frontalize` (MTCNN on downscaled key frames with tracking, dlib 68 landmarks,
   smoothing, similarity alignment with head pose), writing their shard files, resume parts
   and montages to disk. The naive loop decodes every frame and runs full-resolution
   `MTCNN.detect` on it at the pipeline's `min_face_size` (its default 20 is timed too, and
   the loop with the stage's own MTCNN implementation, `pipeline.faces.mtcnn`, once each). Each
   side runs in fresh processes that load their models and warm up on the first video before
   a common start: one process with `--threads` threads, then `--threads` processes of one
   thread each, the videos split between them the same way for both sides. Each side uses
   its threads as it runs best: ffmpeg decodes with all of them on both sides; the naive
   loop gives all to torch (its full-frame MTCNN gains from a second thread), the stage
   gives torch all but one (`faces.torch_threads`) and decodes ahead in a background thread
   (`video.prefetched`), as the DAG's face jobs do. The machine's speed drifts from minute to minute, so each side is timed
   `--rounds` times, the sides in turn; printed: the median frames/s of each, the median of
   the rounds' ratios and each round's ratio.
2. Agreement, counted the same way on every frame: a frame agrees when the pipeline's face box
   overlaps one of the naive loop's confident boxes (score >= the pipeline's min_confidence)
   with IoU >= 0.5, or when neither finds a face. Landmark error: the pipeline's 68 points
   against dlib run on every frame from the matching naive box, mean point distance in % of
   that reference's interocular distance (eye centres), over frames where both have the face.
3. Peak memory (max RSS of a fresh process) of the face stage on a 10-second and a long video.

Targets (issue 16): one-process ratio >= 8 at equal threads, agreement >= 0.98, landmark
error <= 3 % of the interocular distance, long/short peak memory within 10 %.
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

from pipeline.datasets import demo  # noqa: E402
from pipeline.encode import write_video  # noqa: E402

SIZE = (640, 480)


def render(subject: int, emotion: str, n: int) -> list[np.ndarray]:
    return demo.render_subject(subject, emotion, n, SIZE, np.random.default_rng([subject, n]))


def table(paths: list[str]):
    """Rows of videos.csv for `paths`, probed as the dataset stage probes them."""
    import pandas as pd

    from pipeline.datasets.sheet import probe_videos

    sheet = pd.DataFrame(
        {
            "video_id": [f"v{i:03d}_{Path(p).stem}" for i, p in enumerate(paths)],
            "path": paths,
            "subject": "s",
            "label": "x",
        }
    )
    videos, skipped = probe_videos(sheet, 30.0, "fail")
    return videos.set_index("video_id", drop=False)


def stage(videos, workdir: Path, detector, params: dict) -> int:
    """The face stage as the DAG runs it on one shard: detect_faces, then frontalize, files on
    disk (shard, resume parts, montages). Returns the frames written."""
    from pipeline import frontalize
    from pipeline.faces.stage import detect_shard

    workdir.mkdir(parents=True, exist_ok=True)
    faces, aligned = workdir / "faces.h5", workdir / "aligned.h5"
    n, _, _ = detect_shard(videos.reset_index(drop=True), str(faces), params, "fail", detector)
    frontalize.frontalize_shard(
        videos, str(faces), str(aligned), workdir / "montages", frontalize.DEFAULTS, "fail"
    )
    return n


def naive(path: str, net, min_confidence: float) -> list[np.ndarray]:
    """Decode every frame, full-resolution MTCNN on it: the confident boxes of each frame."""
    from pipeline.video import iter_frames

    out = []
    for frame in iter_frames(path):
        boxes, scores = net.detect(frame)
        if boxes is None:
            out.append(np.zeros((0, 4), np.float32))
        else:
            out.append(np.asarray(boxes, np.float32)[np.asarray(scores) >= min_confidence])
    return out


def _worker(side: str, videos, threads: int, workdir: str, min_face: int, barrier, queue) -> None:
    """One process of one side: load, warm up on the first video, wait for the common start,
    run its videos, report (end time, frames, per-video output)."""
    import torch

    from pipeline import video
    from pipeline.faces.detector import DEFAULTS, Detector
    from pipeline.faces.stage import torch_threads

    # the naive loop's MTCNN runs full frames: both torch threads help it (45 vs 38 frames/s on
    # real clips); the stage gives one of its threads to decoding ahead (`torch_threads`)
    torch.set_num_threads(torch_threads(threads) if side == "pipeline" else threads)
    video.DECODE_THREADS = threads
    params = dict(DEFAULTS)
    warm = videos.iloc[:1]
    if side == "pipeline":
        detector = Detector(params)
        stage(warm, Path(workdir) / "warm", detector, params)
        run = lambda: stage(videos, Path(workdir) / "run", detector, params)  # noqa: E731
    elif side == "naive-cascade":  # the naive loop with the stage's MTCNN implementation
        from pipeline.faces.mtcnn import Cascade

        cascade = Cascade(params["thresholds"])

        class Net:
            def detect(self, frame):
                return cascade.detect(frame, min_face)[:2]

        net = Net()
        naive(warm.path.iloc[0], net, params["min_confidence"])

        def run():
            return {v: naive(p, net, params["min_confidence"]) for v, p in videos.path.items()}
    else:
        from facenet_pytorch import MTCNN

        net = MTCNN(keep_all=True, min_face_size=min_face, thresholds=params["thresholds"])
        naive(warm.path.iloc[0], net, params["min_confidence"])

        def run():
            return {v: naive(p, net, params["min_confidence"]) for v, p in videos.path.items()}

    barrier.wait()
    out = run()
    queue.put((time.perf_counter(), out))


def _guarded(*args) -> None:
    try:
        _worker(*args)
    except BaseException:
        args[-2].abort()  # the barrier: nobody waits for a worker that died
        raise


def timed(side: str, videos, processes: int, threads: int, workdir: Path, min_face: int = 40):
    """Wall time of one side over all videos in `processes` fresh processes of `threads` threads
    each (videos dealt round-robin by length), and the outputs of each process."""
    ctx = mp.get_context("spawn")
    order = videos.sort_values("n_frames", ascending=False)
    parts = [order.iloc[i::processes] for i in range(processes)]
    barrier, queue = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_guarded,
            args=(
                side,
                part,
                threads,
                str(workdir / f"{side}-{processes}p-{i}"),
                min_face,
                barrier,
                queue,
            ),
        )
        for i, part in enumerate(parts)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        for p in procs:
            p.join()
        raise RuntimeError(f"a {side} worker failed (see its traceback above)") from None
    t0 = time.perf_counter()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"{side} worker failed (exit {p.exitcode})")
    return max(end for end, _ in results) - t0, [out for _, out in results]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    from pipeline.faces.tracking import iou

    return iou(box, boxes) if len(boxes) else np.zeros(0)


def quality(videos, faces_path: Path, reference: dict[str, list[np.ndarray]]) -> dict:
    """Agreement of the pipeline's boxes with the naive loop's, and its 68 landmarks' error
    against dlib run on every frame from the matching naive box."""
    import h5py

    from pipeline.faces.landmarks import Landmarker
    from pipeline.video import iter_lazy

    landmarker = Landmarker()
    frames = agree = both = only_naive = only_ours = 0
    errors = []
    with h5py.File(faces_path, "r") as f:
        for vid, rec in videos.iterrows():
            g = f[vid]
            boxes, valid, lm68 = g["boxes"][:], g["valid"][:], g["landmarks68"][:]
            for t, frame in enumerate(iter_lazy(rec.path)):
                naive_boxes = reference[vid][t]
                frames += 1
                if not valid[t]:
                    agree += len(naive_boxes) == 0
                    only_naive += len(naive_boxes) > 0
                    continue
                if len(naive_boxes) == 0:
                    only_ours += 1
                    continue
                overlap = box_iou(boxes[t], naive_boxes)
                if overlap.max() < 0.5:
                    continue
                agree += 1
                both += 1
                ref = landmarker(frame.grey(), naive_boxes[overlap.argmax()])
                iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
                errors.append(np.linalg.norm(lm68[t] - ref, axis=1).mean() / iod)
    errors = np.asarray(errors)
    return {
        "agreement": agree / frames,
        "frames_face_both": both,
        "frames_face_naive_only": only_naive,
        "frames_face_pipeline_only": only_ours,
        "landmark_error_pct_iod": 100 * float(errors.mean()) if len(errors) else float("nan"),
        "landmark_error_p95_pct_iod": 100 * float(np.percentile(errors, 95))
        if len(errors)
        else float("nan"),
    }


def peak_memory(path: str, workdir: Path) -> float:
    """Max RSS (MiB) of a fresh process that runs the face stage on `path`."""
    code = (
        "import resource, sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "import torch; torch.set_num_threads(2);"
        "from bench.faces import stage, table; from pipeline.faces.detector import DEFAULTS, Detector;"
        "p = dict(DEFAULTS); stage(table([sys.argv[1]]), Path(sys.argv[2]), Detector(p), p);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path, str(workdir), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def memory(tmp: Path, seconds: int) -> dict:
    clip = render(0, "happiness", 300)
    short, long = tmp / "short.mp4", tmp / "long.mp4"
    write_video(short, clip, fps=30)
    write_video(long, (frame for _ in range(max(1, seconds // 10)) for frame in clip), fps=30)
    out = {
        "peak_mib_10s": peak_memory(str(short), tmp / "mem-short"),
        f"peak_mib_{seconds}s": peak_memory(str(long), tmp / "mem-long"),
    }
    out["memory_ratio"] = out[f"peak_mib_{seconds}s"] / out["peak_mib_10s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="a folder of videos (default: generated 640×480 ones)")
    ap.add_argument("--limit", type=int, default=10, help="videos taken from --dir")
    ap.add_argument("--videos", type=int, default=4, help="generated videos")
    ap.add_argument("--frames", type=int, default=100, help="frames per generated video")
    ap.add_argument("--threads", type=int, default=2, help="threads of the one process (= cores)")
    ap.add_argument("--long-seconds", type=int, default=180, help="0: skip the memory part")
    ap.add_argument("--rounds", type=int, default=3, help="times each side is timed, in turn")
    args = ap.parse_args()

    from pipeline.faces.detector import DEFAULTS

    tmp = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    try:
        if args.dir:
            files = sorted(p for p in Path(args.dir).iterdir() if p.suffix.lower() == ".mp4")
            pick = np.unique(np.linspace(0, len(files) - 1, min(args.limit, len(files))).round())
            paths = [str(files[int(i)].resolve()) for i in pick]
        else:
            paths = []
            for i in range(args.videos):
                path = tmp / f"v{i}.mp4"
                write_video(path, render(i, demo.EMOTIONS[i % 6], args.frames), fps=30)
                paths.append(str(path))
        videos = table(paths)
        frames = int(videos.n_frames.sum())
        min_face = int(DEFAULTS["min_face_size"])
        k = args.threads
        rounds = []  # both sides in turn, `--rounds` times: the machine's speed drifts
        for r in range(args.rounds):
            work = tmp / f"round{r}"
            t_one, _ = timed("pipeline", videos, 1, k, work)
            t_base, (found,) = timed("naive", videos, 1, k, work, min_face)
            t_shards, _ = timed("pipeline", videos, k, 1, work)
            t_base_shards, _ = timed("naive", videos, k, 1, work, min_face)
            rounds.append((t_one, t_base, t_shards, t_base_shards))
            if r == 0:
                reference = found  # the naive loop's boxes: the same every round
        t_one, t_base, t_shards, t_base_shards = np.median(np.array(rounds), axis=0)
        ratios = np.array([[b / a, d / c] for a, b, c, d in rounds])
        t_default, _ = timed("naive", videos, 1, k, tmp, 20)
        t_cascade, _ = timed("naive-cascade", videos, 1, k, tmp, min_face)
        result = {
            "videos": len(videos),
            "frames": frames,
            "size": f"{int(videos.width.iloc[0])}x{int(videos.height.iloc[0])}",
            "rounds": args.rounds,
            "pipeline_fps_1proc": frames / t_one,
            f"naive_fps_1proc_min_face_{min_face}": frames / t_base,
            "ratio_1proc": float(np.median(ratios[:, 0])),
            "ratio_1proc_rounds": [round(float(x), 2) for x in ratios[:, 0]],
            f"pipeline_fps_{k}proc": frames / t_shards,
            f"naive_fps_{k}proc_min_face_{min_face}": frames / t_base_shards,
            f"ratio_{k}proc": float(np.median(ratios[:, 1])),
            f"ratio_{k}proc_rounds": [round(float(x), 2) for x in ratios[:, 1]],
            "naive_fps_1proc_min_face_20_mtcnn_default": frames / t_default,
            f"naive_fps_1proc_min_face_{min_face}_stage_mtcnn": frames / t_cascade,
        }
        faces = tmp / "round0" / "pipeline-1p-0" / "run" / "faces.h5"
        result.update(quality(videos, faces, reference))
        if args.long_seconds > 0:  # memory: a 10-second video and a long one (10 s looped)
            result.update(memory(tmp, args.long_seconds))
        report(result, k)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict, k: int) -> None:
    print(
        json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2
        )
    )
    line = (
        f"face stage on {result['videos']} videos {result['size']}: one process "
        f"{result['pipeline_fps_1proc']:.1f} frames/s, {result['ratio_1proc']:.1f}x the naive "
        f"loop; {k} processes {result[f'pipeline_fps_{k}proc']:.1f} frames/s, "
        f"{result[f'ratio_{k}proc']:.1f}x; agreement {result['agreement']:.3f}; landmark error "
        f"{result['landmark_error_pct_iod']:.2f} % IOD"
    )
    if "memory_ratio" in result:
        line += f"; peak memory long/short = {result['memory_ratio']:.3f}"
    print(line)


if __name__ == "__main__":
    main()
