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

The source is read from the start, while the networks load: frames that arrive meanwhile
wait (up to BACKLOG, then the reader waits and a pipe fills), none dropped; "ready" on stderr
says when processing starts. From then on, when processing falls behind a live source, frames
are dropped, oldest first, from a queue of `--queue` frames (counted in `dropped`): the
output stays live instead of lagging further and further. A source that delivers faster than
real time (a file piped with `cat`) is not live: its frames wait, none dropped, as do those of
a regular file given as the source. The end of the source (or Ctrl-C) ends the run with a
summary on stderr (fps and seconds count from the first frame processed, not the wait).
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
from pipeline.video import LazyFrame, ffmpeg_message

log = logging.getLogger(__name__)


BACKLOG = 256  # frames kept while the networks load (then the reader waits: the pipe fills)
AHEAD = 2.0  # a source delivering faster than this × real time is not live (a file piped)


class Dropping:
    """A bounded hand-over between the reader and the processing thread. Until `go_live()`
    (the networks loaded) nothing is dropped: up to `backlog` frames wait, then the reader
    does. Live, when `size` frames that may be dropped are waiting, the oldest of them is
    dropped (and counted) to make room for the newest; a frame put with `keep` (it arrived
    ahead of real time: a file piped, not a live source) or any frame with `wait` (a file
    given by path) waits for room instead."""

    def __init__(self, size: int, wait: bool = False, backlog: int = BACKLOG):
        self.items: deque = deque()  # (item, droppable)
        self.size = max(1, int(size))
        self.wait = wait
        self.backlog = max(self.size, int(backlog))
        self.live = False
        self.fresh = 0  # droppable items waiting
        self.dropped = 0
        self.closed = False
        self.ready = threading.Condition()

    def go_live(self) -> None:
        with self.ready:
            self.live = True
            self.ready.notify_all()

    def put(self, item, keep: bool = False) -> None:
        with self.ready:
            if not self.live:
                while not self.live and len(self.items) >= self.backlog:
                    self.ready.wait()
                if not self.live:
                    self.items.append((item, False))
                    self.ready.notify_all()
                    return
            while (self.wait or keep) and len(self.items) >= self.size:
                self.ready.wait()
            droppable = not (self.wait or keep)
            if droppable and self.fresh >= self.size:
                oldest = next(i for i, (_, d) in enumerate(self.items) if d)
                del self.items[oldest]
                self.fresh -= 1
                self.dropped += 1
            self.items.append((item, droppable))
            self.fresh += droppable
            self.ready.notify_all()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def get(self):
        """The oldest waiting item; None once closed and empty."""
        with self.ready:
            while not self.items and not self.closed:
                self.ready.wait()
            item, droppable = self.items.popleft() if self.items else (None, False)
            self.fresh -= droppable
            self.ready.notify_all()
            return item


class Pace:
    """Whether a source delivers faster than real time: over its last frames, presentation
    time advanced more than AHEAD × the wall time they took to arrive (a file piped with
    `cat`; a live source delivers at most at its frame rate, apart from short bursts)."""

    def __init__(self, span: int = 8):
        self.seen: deque = deque(maxlen=span)

    def ahead(self, arrived: float, pts: float | None) -> bool:
        if pts is None:
            return False
        self.seen.append((arrived, pts))
        (t0, p0), (t1, p1) = self.seen[0], self.seen[-1]
        return len(self.seen) > 1 and (p1 - p0) > AHEAD * max(t1 - t0, 1e-3)


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
        raise VideoError(unreadable(source, "open", err)) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{source}: no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1  # no frame threading: it holds frames back
        try:
            for frame in container.decode(stream):
                yield LazyFrame(frame, None if frame.time is None else float(frame.time))
        except av.error.FFmpegError as err:
            raise VideoError(unreadable(source, "decode", err)) from None


def unreadable(source: str, verb: str, err: Exception) -> str:
    """Why a stream cannot be read, and how to send one that can."""
    what = "stdin" if source == "-" else source
    return (
        f"{what}: cannot {verb} the stream ({ffmpeg_message(err)}). A pipe needs "
        "a format that can be read as it arrives: MPEG-TS, Matroska, NUT or y4m (ffmpeg -i IN "
        "-f mpegts - | python -m pipeline.predict.stream - --format mpegts …), or an mp4 with "
        "its index first (ffmpeg -i IN -c copy -movflags +faststart OUT.mp4)"
    )


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
    processed, dropped, latency percentiles, fps from the first frame on).

    The source is read from the start, while the networks load: what arrives meanwhile waits
    (`Dropping`'s backlog), none of it dropped; "ready" on stderr says when frames are
    processed live, and only frames that arrive after it may be dropped."""
    started = time.monotonic()
    handoff = Dropping(queue, wait=os.path.isfile(source))
    reader = Reader(source, format, max_frames, handoff)
    reader.start()
    with Predictor(model_dir, device, threads, calibration, reference) as predictor:
        live = Live(predictor)
        live.warm_up()
        header = _header(predictor.classes, live.columns)
        out.write(",".join(header) + "\n")
        out.flush()
        handoff.go_live()
        backlog, ready = reader.received, time.monotonic() - started
        log.info(
            "ready after %.1f s (networks loaded and warmed up): %d frames received so far, "
            "all of them kept; from now on, frames that cannot be processed in time are dropped",
            ready,
            backlog,
        )
        summary = _run_live(live, predictor.classes, handoff, out)
    if reader.failure:
        raise reader.failure[0]
    return {
        "frames": reader.received,
        "received_before_ready": backlog,
        "ready_s": round(ready, 2),
        **summary,
    }


class Reader(threading.Thread):
    """Reads the source's frames into the hand-over, each with its arrival time; started
    before the networks load, so that a pipe's first frames are not lost."""

    def __init__(self, source: str, format: str | None, max_frames: int | None, handoff):
        super().__init__(name="stream-reader", daemon=True)
        self.source, self.format, self.max_frames = source, format, max_frames
        self.handoff = handoff
        self.received = 0
        self.failure: list[BaseException] = []

    def run(self) -> None:
        pace = Pace()
        try:
            for index, frame in enumerate(frames_of(self.source, self.format)):
                if self.max_frames is not None and index >= self.max_frames:
                    break
                arrived = time.monotonic()
                self.received += 1
                self.handoff.put((index, frame, arrived), keep=pace.ahead(arrived, frame.time))
        except BaseException as err:  # re-raised in the main thread
            self.failure.append(err)
        finally:
            self.handoff.close()


def _header(classes: list[str], columns: list[str]) -> list[str]:
    return [
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
        *columns,
        "latency_ms",
        "dropped",
    ]


def _run_live(live, classes: list[str], handoff: Dropping, out) -> dict:
    """The loop: one CSV line per frame processed; the summary counts from the first frame."""
    latencies: list[float] = []
    processed = 0
    first = last = None
    try:
        while (item := handoff.get()) is not None:
            index, frame, arrived = item
            first = time.monotonic() if first is None else first
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
            last = time.monotonic()
            latency = (last - arrived) * 1000
            latencies.append(latency)
            cells += [f"{latency:.1f}", str(index - processed)]  # dropped before it
            out.write(",".join(cells) + "\n")
            out.flush()
            processed += 1
    except KeyboardInterrupt:
        log.info("interrupted")
    elapsed = (last - first) if first is not None and last is not None else 0.0
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "processed": processed,
        "dropped": handoff.dropped,
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "fps": round(processed / elapsed, 2) if elapsed > 0 else 0.0,
        "seconds": round(elapsed, 2),
    }


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
