"""Video input and output: video files (PyAV, ffmpeg inside its wheel) and frame folders.

A "video" is either a file PyAV can decode or a folder of images (natural sort of names).
Frames are always yielded one at a time as RGB uint8 arrays of shape (H, W, 3): nothing here
holds a whole video in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common import VideoError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    n_frames: int
    width: int
    height: int


def natural_key(name: str) -> list:
    """Sort key that puts frame2.png before frame10.png."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as err:  # PIL raises many types for a broken image
        raise VideoError(f"{path}: cannot read image ({err})") from None


def probe(path: str | Path, folder_fps: float = 30.0) -> VideoInfo:
    """Frame rate, frame count and size of a video file or frame folder.

    The frame count is the number of frames that actually decode (container headers lie).
    Raises VideoError with the reason when the video cannot be used.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoError(f"{path}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
        first = _read_image(files[0])
        return VideoInfo(float(folder_fps), len(files), first.shape[1], first.shape[0])
    if not path.exists():
        raise VideoError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or folder_fps
            n = 0
            width = height = 0
            for frame in container.decode(stream):
                if n == 0:
                    width, height = frame.width, frame.height
                n += 1
    except VideoError:
        raise
    except Exception as err:  # av.error.* (InvalidDataError, ...) for broken files
        raise VideoError(f"{path}: cannot decode ({type(err).__name__}: {err})") from None
    if n == 0:
        raise VideoError(f"{path}: no decodable frames")
    return VideoInfo(fps, n, width, height)


class LazyFrame:
    """A decoded frame whose RGB array is made only when asked for (`rgb()`)."""

    __slots__ = ("_source", "_rgb", "time")

    def __init__(self, source, time: float | None = None):
        self._source = source  # an av.VideoFrame or an image Path
        self._rgb: np.ndarray | None = None
        self.time = time  # presentation time in seconds (None for image files)

    def rgb(self) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        if self._rgb is None:
            if isinstance(self._source, Path):
                self._rgb = _read_image(self._source)
            else:
                self._rgb = self._source.to_ndarray(format="rgb24")
        return self._rgb


def iter_lazy(path: str | Path) -> Iterator[LazyFrame]:
    """Yield the frames of a video file or frame folder without converting them to RGB yet."""
    path = Path(path)
    if path.is_dir():
        for file in frame_files(path):
            yield LazyFrame(file)
        return
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                yield LazyFrame(frame, frame.time)
    except Exception as err:
        raise VideoError(f"{path}: decoding failed ({type(err).__name__}: {err})") from None


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or frame folder as RGB uint8 (H, W, 3) arrays."""
    for frame in iter_lazy(path):
        yield frame.rgb()


def batched(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Group an iterator of frames into lists of at most `size`."""
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 30, crf: int = 18):
    """Encode RGB uint8 frames (even width and height) as H.264 mp4, reproducibly.

    x264 runs single-threaded without lookahead or macroblock-tree rate control: with them,
    the first frames' bytes were seen to change from run to run.
    """
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = None
        for index, frame in enumerate(frames):
            height, width = frame.shape[:2]
            if stream is None:
                if width % 2 or height % 2:
                    raise ValueError(
                        f"{path}: H.264 4:2:0 needs even frame sizes, got {width}x{height}"
                    )
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.options = {
                    "crf": str(crf),
                    "preset": "veryfast",
                    "threads": "1",
                    "x264-params": "rc-lookahead=0:mbtree=0",
                }
                stream.thread_count = 1
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
