"""The bad-input corpus: messy videos generated on the fly (no binaries in the repository).

Each case is a file (or folder) under the corpus root, a sheet row, and the outcome the
pipeline must give: `kept` (the video goes through every stage, with what is checked about
it) or `skipped` at a stage, with a phrase the recorded reason must contain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.datasets import demo
from pipeline.encode import write_video

SIZE = (160, 120)


@dataclass
class Case:
    name: str
    path: str  # relative to the corpus root, as written in the sheet
    make: Callable[[Path], None]
    outcome: str  # kept | skipped
    stage: str = ""  # for skipped: the stage that records it
    reason: str = ""  # for skipped: a phrase of the reason
    subject: str = "s01"
    label: str = "happiness"
    checks: dict = field(default_factory=dict)  # for kept: facts checked after the run


def face_frames(n: int, size=SIZE, subject: int = 0, emotion: str = "happiness", seed: int = 7):
    return demo.render_subject(subject, emotion, n, size, np.random.default_rng(seed))


def video(frames_fn, **kwargs):
    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames_fn(), **kwargs)

    return make


def raw(data: bytes):
    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return make


def truncated(path: Path) -> None:
    full = path.with_name("full-" + path.name)
    write_video(full, face_frames(30))
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 3])


def audio_only(path: Path) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        t = np.arange(16000) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate = 16000
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def variable_frame_rate(path: Path) -> None:
    """Frames at irregular times (as phones record): 30 fps, then 10 fps, then 30 fps."""
    import av

    frames = face_frames(30)
    times = np.cumsum([0] + [1 if i < 10 or i >= 20 else 3 for i in range(len(frames) - 1)])
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        stream.codec_context.time_base = Fraction(1, 30)
        for frame, t in zip(frames, times, strict=True):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = int(t)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def two_faces() -> list[np.ndarray]:
    left = face_frames(24, (160, 240), subject=0)
    right = face_frames(24, (160, 240), subject=1, emotion="surprise")
    return [np.concatenate([a, b], axis=1) for a, b in zip(left, right, strict=True)]


def tiny_face() -> list[np.ndarray]:
    import cv2

    frames = []
    for f in face_frames(20):
        canvas = np.full((240, 320, 3), 60, np.uint8)
        canvas[100:112, 150:166] = cv2.resize(f, (16, 12), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return frames


def cropped_faces() -> list[np.ndarray]:
    import cv2

    # the middle of the demo frame, where the face is, at 48×48 like FER datasets
    return [cv2.resize(f[20:100, 40:120], (48, 48)) for f in face_frames(20)]


def grey() -> list[np.ndarray]:
    return [np.repeat(f.mean(2, keepdims=True).astype(np.uint8), 3, 2) for f in face_frames(20)]


def black_start() -> list[np.ndarray]:
    frames = face_frames(30)
    return [np.zeros_like(f) for f in frames[:10]] + frames[10:]


def talking() -> list[np.ndarray]:
    """Mouth moving all the time: the expression alternates every few frames."""
    a = face_frames(32, emotion="surprise", seed=3)
    b = face_frames(32, emotion="happiness", seed=3)
    return [a[i] if (i // 3) % 2 else b[i] for i in range(32)]


def four_k() -> list[np.ndarray]:
    import cv2

    return [cv2.resize(f, (3840, 2160), interpolation=cv2.INTER_LINEAR) for f in face_frames(4)]


def rotated_frames() -> list[np.ndarray]:
    # stored sideways, as a phone held upright stores them; display rotation turns them back
    return [np.ascontiguousarray(np.rot90(f, k=-1)) for f in face_frames(20)]


CASES = [
    Case("zero-byte file", "bad/zero.mp4", raw(b""), "skipped", "dataset", "file is empty"),
    Case("truncated mp4", "bad/truncated.mp4", truncated, "skipped", "dataset", "cannot decode"),
    Case("text file named .mp4", "bad/text.mp4", raw(b"this is not a video\n" * 50),
         "skipped", "dataset", "cannot decode"),
    Case("audio-only file", "bad/audio.mp4", audio_only, "skipped", "dataset", "no video stream"),
    Case("video with no face", "bad/noface.mp4",
         video(lambda: [np.full((240, 320, 3), 90, np.uint8)] * 20),
         "skipped", "detect_faces", "no face found"),
    Case("tiny face (12 px)", "bad/tiny.mp4", video(tiny_face), "skipped", "detect_faces",
         "no face found"),
    Case("two faces", "odd/two_faces.mp4", video(two_faces), "kept",
         checks={"more_than_one_face": True}),
    # MTCNN still finds a face filling a 48×48 crop, so it is aligned like any other; crops
    # where it finds none are taken whole (tests/test_faces.py covers that path)
    Case("face already cropped (48×48)", "odd/cropped.mp4", video(cropped_faces), "kept",
         checks={"faces": 1.0, "size": (48, 48)}),
    Case("grayscale video", "odd/grey.mp4", video(grey), "kept", checks={"faces": 1.0}),
    Case("90° rotation metadata", "odd/rotated.mp4", video(rotated_frames, rotation=90), "kept",
         checks={"rotation": 90, "size": (160, 120), "faces": 1.0}),
    Case("variable frame rate", "odd/vfr.mp4", variable_frame_rate, "kept",
         checks={"frames": 30}),
    Case("1-frame video", "odd/one.mp4", video(lambda: face_frames(1)), "kept",
         checks={"frames": 1, "clips": 1}),
    Case("shorter than 16 frames", "odd/short.mp4", video(lambda: face_frames(10)), "kept",
         checks={"frames": 10, "clips": 1}),
    Case("first frames black", "odd/black_start.mp4", video(black_start), "kept",
         checks={"first_face": 10}),
    Case("talking throughout", "odd/talking.mp4", video(talking), "kept", checks={"faces": 1.0}),
    Case("4K frames", "odd/4k.mp4", video(four_k), "kept", checks={"size": (3840, 2160)}),
    # each its own frames: one video under two subjects is an audit error (duplicate_content)
    Case("name with spaces", "names/with space.mp4", video(lambda: face_frames(18, seed=20)),
         "kept"),
    Case("unicode name", "names/émotion_ünïcødé_表情.mp4",
         video(lambda: face_frames(18, seed=21)), "kept"),
    Case("quotes in the name", "names/it's \"quoted\".mp4", video(lambda: face_frames(18, seed=22)),
         "kept"),
    Case("shell substitution in the name", "names/$(touch PWNED).mp4",
         video(lambda: face_frames(18, seed=23)), "kept"),
    Case("HTML in the name", "names/<script>alert(1)<b>.mp4",
         video(lambda: face_frames(18, seed=24)), "kept"),
]  # fmt: skip


def build(root: Path) -> list[Case]:
    for case in CASES:
        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        case.make(path)
    return CASES
