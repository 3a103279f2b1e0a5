"""Benchmark of live prediction: a video piped at its real frame rate, latency per frame.

    .venv/bin/python bench/stream.py [--seconds 20] [--model results/models/gru/hog]
    .venv/bin/python bench/stream.py --video ../shared/data/j-dev/videos/01-01-01_01.mp4

The source: `--video`, else a generated 640×480 demo-style video of `--seconds` seconds at
25 fps (one face, expressions changing). `python -m pipeline.predict.stream -` runs as a user runs it,
in its own process with `--threads` threads; once it has loaded and warmed up its networks
(its CSV header is out), the video is written to its stdin as MPEG-TS, every packet at its
presentation time (`pipeline.predict.stream.feed`), `--speed` times real time. Printed per run:

- frames sent, processed and dropped (the stream drops the oldest waiting frames rather than
  fall behind);
- processing latency p50/p95: from a frame's arrival (decoded) to its CSV line (the tool's
  own `latency_ms` column);
- end-to-end latency p50/p95: from the moment the frame was due at the source to the moment
  its CSV line was read here (adds the container, the decoder's reordering delay and the pipe);
- the frame rate sustained (frames processed per second of stream) against the source's.

Without `--model` the bench saves untrained models with config.yaml's settings (the demo's
preprocessing) and runs two: `gru` (predicts once 16 frames are in its window) and
`cnn_lstm_partial` (predicts after every frame); speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faces import render  # noqa: E402
from bench.predict import untrained_model  # noqa: E402
from pipeline.datasets import demo  # noqa: E402
from pipeline.encode import write_video  # noqa: E402


def due_times(video: str) -> list[float]:
    """Presentation time of every frame of `video`, in decoding order of output (frame i)."""
    import av

    with av.open(video) as c:
        return [float(f.time) for f in c.decode(c.streams.video[0])]


def run(video: str, model: str, threads: int, speed: float, queue: int) -> dict:
    from pipeline.predict.stream import feed

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.predict.stream",
            "-",
            "--model",
            model,
            "--threads",
            str(threads),
            "--queue",
            str(queue),
            "--device",
            "cpu",
        ],  # fmt: skip
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    header = proc.stdout.readline().decode().strip().split(",")  # after the warm-up
    if not header or header[0] != "frame":
        raise SystemExit(f"no CSV header from the stream: {proc.stderr.read().decode()[-2000:]}")
    start = time.monotonic()
    feeder = threading.Thread(target=lambda: _feed(feed, video, proc.stdin, speed))
    feeder.start()
    rows = []
    for line in proc.stdout:
        rows.append((time.monotonic() - start, line.decode().strip().split(",")))
    feeder.join()
    proc.wait()
    if proc.returncode:
        raise SystemExit(proc.stderr.read().decode()[-2000:])
    due = np.asarray(due_times(video)) / speed
    due -= due[0]
    frame = np.array([int(r[header.index("frame")]) for _, r in rows])
    seen = np.array([t for t, _ in rows])
    latency = np.array([float(r[header.index("latency_ms")]) for _, r in rows])
    e2e = (seen - due[frame]) * 1000
    pred = [r[header.index("pred")] for _, r in rows]
    return {
        "sent": len(due),
        "processed": len(rows),
        "dropped": int(rows[-1][1][header.index("dropped")]) if rows else 0,
        "with_prediction": sum(1 for p in pred if p),
        "lat50": np.percentile(latency, 50),
        "lat95": np.percentile(latency, 95),
        "e2e50": np.percentile(e2e, 50),
        "e2e95": np.percentile(e2e, 95),
        "fps": len(rows) / max(seen[-1] - seen[0], 1e-9) if len(rows) > 1 else 0.0,
        "source_fps": (len(due) - 1) / max(due[-1], 1e-9),
    }


def _feed(feed, video, pipe, speed) -> None:
    try:
        feed(video, pipe, speed)
    finally:
        pipe.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", help="a video file (default: a generated one)")
    ap.add_argument("--seconds", type=int, default=20, help="length of the generated video")
    ap.add_argument(
        "--model", help="a trained model's folder (default: untrained gru, cnn_lstm_partial)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--speed", type=float, nargs="+", default=[1.0])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        tmp = Path(tmp)
        video = args.video
        if video is None:
            video = str(tmp / "live.mp4")
            frames = []
            for emotion in demo.EMOTIONS:
                frames += render(0, emotion, args.seconds * 25 // len(demo.EMOTIONS))
            write_video(video, frames, fps=25)
        models = (
            {"given": args.model}
            if args.model
            else {n: str(untrained_model(tmp / n, n)) for n in ("gru", "cnn_lstm_partial")}
        )
        print(f"source: {video}; {args.threads} threads, queue {args.queue}")
        print("| model | speed | sent | processed | dropped | with prediction | latency p50/p95 ms "
              "| end-to-end p50/p95 ms | fps sustained / source |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for name, model in models.items():
            for speed in args.speed:
                r = run(video, model, args.threads, speed, args.queue)
                print(
                    f"| {name} | {speed:g}× | {r['sent']} | {r['processed']} | {r['dropped']} | "
                    f"{r['with_prediction']} | {r['lat50']:.0f} / {r['lat95']:.0f} | "
                    f"{r['e2e50']:.0f} / {r['e2e95']:.0f} | {r['fps']:.1f} / {r['source_fps']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
