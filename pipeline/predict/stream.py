"""Predict on a live source: a camera, an RTSP/HTTP stream, or a video piped on stdin.

    python -m pipeline.predict.stream - --model results/models/gru/hog < video.mkv
    ffmpeg -re -i clip.mp4 -f mpegts - | python -m pipeline.predict.stream - --model DIR --out live.csv
    python -m pipeline.predict.stream 0 --model DIR                # camera 0
    python -m pipeline.predict.stream rtsp://host/stream --model DIR

One CSV line per frame, written (and flushed) as soon as the frame is processed: frame,
time_s, face, x1, y1, x2, y2, confidence, window (frames in the rolling window), pred,
p_<class>, the backbones' per-frame columns (with the blendshapes backbone its 52 scores,
`blendshapes:<name>`, and `blendshapes:found`), latency_ms (from the frame's arrival to its
line), dropped (frames dropped before this one).
The steps are those of the trained pipeline (`model.pt` holds their settings), done causally,
one frame at a time: detection and tracking of the primary face, 68 landmarks, the pose and
the aligned crop, the backbone(s), the person calibration (`per_subject`: the statistics of
this stream's frames so far), the fold models on the last `clip length` frames. A model that
predicts after every frame (cnn_lstm_partial's `frame_outputs`) gives a prediction from the
first face on, over the frames seen so far; the others once the window is full. Unlike the
offline path nothing looks ahead: no interpolation across missed detections (a frame without a
face keeps the last face's crop in the window, as the offline path fills gaps with the nearest
face) and no landmark smoothing, so the values differ slightly from `pipeline.predict`'s.

When processing falls behind a live source, frames are dropped, oldest first, from a queue of
`--queue` frames (counted in `dropped`): the output stays live instead of lagging further and
further. A regular file given as the source is read as fast as it is processed, every frame
(it is not live). The end of the source (or Ctrl-C) ends the run with a summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np

from pipeline.common import ConfigError, VideoError, run_main, setup_logging
from pipeline.predict import Predictor
from pipeline.predict.online import Live
from pipeline.video import LazyFrame

log = logging.getLogger(__name__)


class Dropping:
    """A bounded hand-over between the reader and the processing thread: when full, the
    oldest frame is dropped (and counted) to make room for the newest."""

    def __init__(self, size: int, wait: bool = False):
        self.items: deque = deque()
        self.size = max(1, int(size))
        self.wait = wait  # a file is not live: wait for room instead of dropping
        self.dropped = 0
        self.closed = False
        self.ready = threading.Condition()

    def put(self, item) -> None:
        with self.ready:
            while self.wait and len(self.items) >= self.size:
                self.ready.wait()
            if len(self.items) >= self.size:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.ready.notify_all()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def get(self):
        """The oldest waiting item; None once closed and empty."""
        with self.ready:
            while not self.items and not self.closed:
                self.ready.wait()
            item = self.items.popleft() if self.items else None
            self.ready.notify_all()
            return item


def frames_of(source: str, format: str | None = None) -> Iterator:
    """LazyFrames of a live source as they arrive: "-" (stdin), a camera index, or a URL or
    path PyAV opens. Probing is kept short so that the first frame is not held back."""
    import av

    if source.isdigit():
        yield from camera_frames(int(source))
        return
    # a short probe: on a pipe, the frames probed are decoded in one burst (and dropped)
    options = {"probesize": "4096" if source == "-" else "32768", "analyzeduration": "0"}
    if source.startswith("rtsp://"):
        options["rtsp_transport"] = "tcp"
    target = "pipe:0" if source == "-" else source  # ffmpeg reads the pipe as bytes come
    try:
        container = av.open(target, format=format, options=options)
    except (av.error.FFmpegError, OSError) as err:
        what = "stdin" if source == "-" else source
        raise VideoError(
            f"{what}: cannot open the stream ({err}); a pipe needs a streamable format "
            "(mpegts, matroska, y4m; an mp4 only with its index first), set with --format"
        ) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{source}: no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1  # no frame threading: it holds frames back
        for frame in container.decode(stream):
            yield LazyFrame(frame, None if frame.time is None else float(frame.time))


def camera_frames(index: int) -> Iterator:
    import av
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise VideoError(f"camera {index}: cannot open it (is it connected and free?)")
    start = time.monotonic()
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield LazyFrame(
                av.VideoFrame.from_ndarray(rgb, format="rgb24"), time.monotonic() - start
            )
    finally:
        capture.release()


def run_stream(
    source: str,
    model_dir: str,
    out,
    device: str = "auto",
    threads: int = 2,
    calibration: Sequence[str] = (),
    queue: int = 4,
    format: str | None = None,
    max_frames: int | None = None,
    reference: str | None = None,
) -> dict:
    """Predict on `source` frame by frame, writing CSV lines to the text stream `out`
    (following the person of the photo `reference`, if given); returns the summary (frames,
    processed, dropped, latency percentiles, fps)."""

    with Predictor(model_dir, device, threads, calibration, reference) as predictor:
        return _run_live(predictor, source, out, queue, format, max_frames)


def _run_live(predictor, source, out, queue: int, format, max_frames) -> dict:
    """run_stream's loop, with the predictor loaded (and closed by the caller)."""
    live = Live(predictor)
    live.warm_up()
    classes = predictor.classes
    header = [
        "frame",
        "time_s",
        "face",
        "x1",
        "y1",
        "x2",
        "y2",
        "confidence",
        "window",
        "pred",
        *(f"p_{c}" for c in classes),
        *live.columns,
        "latency_ms",
        "dropped",
    ]
    out.write(",".join(header) + "\n")
    out.flush()
    handoff = Dropping(queue, wait=os.path.isfile(source))
    failure: list[BaseException] = []
    received = 0

    def read() -> None:
        nonlocal received
        try:
            for index, frame in enumerate(frames_of(source, format)):
                if max_frames is not None and index >= max_frames:
                    break
                received += 1
                handoff.put((index, frame, time.monotonic()))
        except BaseException as err:  # re-raised in the main thread
            failure.append(err)
        finally:
            handoff.close()

    reader = threading.Thread(target=read, name="stream-reader", daemon=True)
    latencies: list[float] = []
    started = time.monotonic()
    reader.start()
    processed = 0
    try:
        while (item := handoff.get()) is not None:
            index, frame, arrived = item
            found, probs = live.step(frame)
            face = found["face"]
            cells = [str(index), _num(frame.time), str(int(face is not None))]
            if face is not None:
                cells += [_num(v, 2) for v in face.box] + [_num(face.score, 4)]
            else:
                cells += [""] * 5
            cells.append(str(len(live.windows[0])))
            if probs is not None:
                cells += [classes[int(probs.argmax())], *(_num(p, 5) for p in probs)]
            else:
                cells += [""] * (1 + len(classes))
            shown = live.values if face is not None else {}
            cells += [_num(shown.get(name), 5) for name in live.columns]
            latency = (time.monotonic() - arrived) * 1000
            latencies.append(latency)
            cells += [f"{latency:.1f}", str(index - processed)]  # dropped before it
            out.write(",".join(cells) + "\n")
            out.flush()
            processed += 1
    except KeyboardInterrupt:
        log.info("interrupted")
    elapsed = time.monotonic() - started
    if failure:
        raise failure[0]
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    summary = {
        "frames": received,
        "processed": processed,
        "dropped": handoff.dropped,
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "fps": round(processed / elapsed, 2) if elapsed > 0 else 0.0,
        "seconds": round(elapsed, 2),
    }
    return summary


def _num(value, digits: int = 4) -> str:
    return "" if value is None or not np.isfinite(value) else f"{float(value):.{digits}f}"


def feed(path: str, pipe, speed: float = 1.0, format: str = "mpegts") -> None:
    """Write a video file to `pipe` (a binary stream) as `format`, each packet at its
    presentation time (speed 1: the video's real frame rate), as a live source would."""
    import av

    options = {"flush_packets": "1"}  # every packet out at once, as a live source sends it
    with av.open(path) as src, av.open(pipe, "w", format=format, options=options) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        start, first = time.monotonic(), None
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.time_base is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                due = float((packet.pts - first) * packet.time_base) / speed
                wait = start + due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            packet.stream = out
            dst.mux(packet)
            pipe.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.predict.stream",
        description="Emotion probabilities frame by frame from a live source.",
    )
    ap.add_argument("source", help="-: a video piped on stdin; N: camera N; or a URL / path")
    ap.add_argument("--model", required=True, help="a trained model's folder (as predict's)")
    ap.add_argument("--out", default="-", help="CSV file for the per-frame lines (-: stdout)")
    ap.add_argument("--format", help="the container format of the source (e.g. mpegts)")
    ap.add_argument(
        "--queue",
        type=int,
        default=4,
        help="frames that wait at most while one is processed; older ones are dropped and "
        "counted (default: %(default)s)",
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads of the networks (PyTorch's; default: %(default)s)",
    )
    ap.add_argument("--max-frames", type=int, help="stop after this many frames")
    ap.add_argument("--reference", metavar="PHOTO", help="a photo of the person to follow")
    ap.add_argument(
        "--calibrate",
        nargs="+",
        default=[],
        metavar="VIDEO",
        help="models trained with normalize: calibrated: recorded video(s) of the same person",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if args.queue < 1:
        raise ConfigError(f"--queue {args.queue}: at least 1 frame")
    with contextlib.ExitStack() as stack:
        out = (
            sys.stdout if args.out == "-" else stack.enter_context(open(args.out, "w", buffering=1))
        )
        summary = run_stream(
            args.source,
            args.model,
            out,
            args.device,
            args.threads,
            args.calibrate,
            args.queue,
            args.format,
            args.max_frames,
            args.reference,
        )
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
