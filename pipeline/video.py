"""Video input: video files (PyAV, ffmpeg inside its wheel) and frame folders (writing: `encode`).

A "video" is either a file PyAV can decode or a folder of images (natural sort of names).
Frames are always yielded one at a time as RGB uint8 arrays of shape (H, W, 3): nothing here
holds a whole video in memory. Frames come upright: a file's display rotation (the container's
display matrix, as phones write it) is applied. With a `target_fps` below the source rate,
frames are dropped evenly (the first frame of every 1/target_fps slot is kept); it never adds
frames. Probing and decoding take the same options, so frame indices agree across stages.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common import VideoError

DECODE_THREADS = 2  # ffmpeg decoding threads per video; with one, `prefetched` is off too
PREFETCH = 16  # frames decoded ahead by a background thread (see `prefetched`)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # rate of the frames as decoded (after target_fps)
    n_frames: int  # frames as decoded (after target_fps)
    width: int  # upright, after rotation
    height: int
    source_fps: float = 0.0  # the file's own average rate
    rotation: int = 0  # display rotation applied, degrees counter-clockwise
    content: str = ""  # `probe(fingerprint=True)`: what the frames hold (see `Fingerprint`)


class Resampler:
    """Keeps the first frame of every 1/target slot; keeps all when target is None or not lower."""

    def __init__(self, source_fps: float, target_fps: float | None):
        self.source_fps = float(source_fps)
        self.target = target_fps if target_fps and target_fps < source_fps - 1e-6 else None
        self.fps = float(self.target or source_fps)
        self.next_slot = 0

    def keep(self, index: int, time: float | None = None) -> bool:
        """Whether frame `index` (presented at `time`, default index / source fps) is kept."""
        if self.target is None:
            return True
        t = index / self.source_fps if time is None else time
        slot = int(np.floor(t * self.target + 1e-6))
        if slot < self.next_slot:
            return False
        self.next_slot = slot + 1
        return True


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


class Fingerprint:
    """What a video holds, as a 128-bit hex digest: every `EVERY`-th decoded frame's luma (of
    a frame folder: every `EVERY`-th image file's bytes), the frame count and the size. Two
    files with the same digest show the same frames: a copy, or the same stream in another
    container. Names, metadata and the container are left out; a re-encoded copy differs."""

    EVERY = 8

    def __init__(self) -> None:

        self._hash = hashlib.blake2b(digest_size=16)

    def frame(self, index: int, frame) -> None:
        """Add decoded frame `index` (a PyAV VideoFrame) if it is one of the sampled ones."""
        if index % self.EVERY:
            return
        if frame.format.name.startswith(("yuv", "yuvj", "gray", "nv")):
            plane = frame.planes[0]  # luma, without the row padding (which is not content)
            rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            self._hash.update(np.ascontiguousarray(rows[: plane.height, : plane.width]))
        else:
            self._hash.update(np.ascontiguousarray(frame.to_ndarray()))

    def file(self, index: int, path: Path) -> None:
        if not index % self.EVERY:
            self._hash.update(path.read_bytes())

    def digest(self, n_frames: int, width: int, height: int) -> str:
        self._hash.update(f"{n_frames}:{width}x{height}".encode())
        return self._hash.hexdigest()


def probe(
    path: str | Path,
    folder_fps: float = 30.0,
    target_fps: float | None = None,
    count: bool = True,
    fingerprint: bool = False,
) -> VideoInfo:
    """Frame rate, frame count, upright size and rotation of a video file or frame folder.

    The frame count is the number of frames that actually decode (container headers lie), after
    `target_fps`. Raises VideoError with the reason when the video cannot be used. With
    `count=False` a video file is decoded up to its first frame only and `n_frames` is 0
    (unknown), for a caller that decodes it next anyway and finds its end then. With
    `fingerprint` (and `count`), `content` is the video's `Fingerprint` (the audit's
    duplicate check), computed on the frames the count decodes anyway.
    """
    path = Path(path)
    marks = Fingerprint() if fingerprint and count else None
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoError(f"{path}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
        first = _read_image(files[0])
        keep = Resampler(float(folder_fps), target_fps)
        n = sum(keep.keep(i) for i in range(len(files)))
        height, width = first.shape[:2]
        content = ""
        if marks:
            for i, file in enumerate(files):
                marks.file(i, file)
            content = marks.digest(len(files), width, height)
        return VideoInfo(keep.fps, n, width, height, float(folder_fps), 0, content)
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
            keep = Resampler(fps, target_fps)
            n = decoded = 0
            width = height = rotation = 0
            for index, frame in enumerate(container.decode(stream)):
                if index == 0:
                    rotation = _rotation(frame)
                    width, height = frame.width, frame.height
                    if rotation in (90, 270):
                        width, height = height, width
                    if not count:
                        return VideoInfo(keep.fps, 0, width, height, fps, rotation)
                if marks:
                    marks.frame(index, frame)
                n += keep.keep(index, frame.time)
                decoded = index + 1
    except VideoError:
        raise
    except Exception as err:  # av.error.* (InvalidDataError, ...) for broken files
        raise VideoError(f"{path}: cannot decode it ({decode_reason(err)})") from None
    if n == 0:
        raise VideoError(f"{path}: no decodable frames")
    content = marks.digest(decoded, width, height) if marks else ""
    return VideoInfo(keep.fps, n, width, height, fps, rotation, content)


def decode_reason(err: Exception) -> str:
    """Why FFmpeg could not decode, in words, and what to try: its message without the errno
    number and file name PyAV adds ("[Errno 1094995529] Invalid data found…: 'x.mp4'")."""
    import av

    text = ffmpeg_message(err)
    if isinstance(err, av.error.InvalidDataError):
        hint = (
            "the file is damaged, cut short, or not a video FFmpeg knows: play it, copy it again "
            "from its source, or re-encode it with ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    elif isinstance(err, PermissionError | av.error.PermissionError):
        hint = "this user may not read it: check its permissions"
    elif isinstance(err, av.error.EOFError | EOFError):
        hint = "the file ends before its frames do (cut short): copy it again from its source"
    else:
        hint = "if other players read it, re-encode it with ffmpeg -i IN -c:v libx264 OUT.mp4"
    return f"{text}; {hint}"


def ffmpeg_message(err: Exception) -> str:
    """FFmpeg's words for an error, without PyAV's errno number and file name."""
    import av

    text = err.strerror if isinstance(err, av.error.FFmpegError) else str(err)
    return (text or type(err).__name__).rstrip(".")


def _rotation(frame) -> int:
    """A decoded frame's display rotation, counter-clockwise, rounded to 0/90/180/270."""
    try:
        degrees = float(frame.rotation or 0)
    except Exception:  # no display matrix
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


# Limited-range luma (16–235) to full-range grey: what swscale's `gray` conversion does
LUMA_TO_GREY = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def _yuv420(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Views of the Y, U, V planes of a limited-range yuv420p av.VideoFrame of even size."""
    if frame.format.name != "yuv420p" or (frame.width | frame.height) & 1:
        return None
    if getattr(frame, "color_range", 0) == 2:  # full-range (JPEG) luma: swscale's path
        return None
    planes = []
    for k, plane in enumerate(frame.planes):
        h, w = (frame.height, frame.width) if k == 0 else (frame.height // 2, frame.width // 2)
        planes.append(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w])
    return planes[0], planes[1], planes[2]


class LazyFrame:
    """A decoded frame whose RGB array is made only when asked for (`rgb()`), or only the part
    of it that is needed (`region()`)."""

    __slots__ = ("_source", "_rgb", "_grey", "time", "rotation")

    def __init__(self, source, time: float | None = None, rotation: int = 0):
        self._source = source  # an av.VideoFrame or an image Path
        self._rgb: np.ndarray | None = None
        self._grey: np.ndarray | None = None
        self.time = time  # presentation time in seconds (index / folder_fps for image folders)
        self.rotation = rotation  # counter-clockwise degrees applied to make the frame upright

    def rgb(self) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        if self._rgb is None:
            if isinstance(self._source, Path):
                self._rgb = _read_image(self._source)
            else:
                rgb = self._source.to_ndarray(format="rgb24")
                if self.rotation:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=self.rotation // 90))
                self._rgb = rgb
        return self._rgb

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) upright, without converting anything."""
        if self._rgb is not None or isinstance(self._source, Path):
            return self.rgb().shape[:2]
        h, w = self._source.height, self._source.width
        return (w, h) if self.rotation in (90, 270) else (h, w)

    def _planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The Y, U, V planes when the frame is upright limited-range yuv420p, else None."""
        if isinstance(self._source, Path) or self.rotation:
            return None
        return _yuv420(self._source)

    def region(self, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
        """RGB uint8 of the part [x0, x1) × [y0, y1) of the frame (clipped to it), and the
        pixel where it starts: (array, left, top). A yuv420p frame converts only that part
        (cv2's BT.601 conversion: 1.2 levels from swscale's on average, at most 4 measured, as
        they upsample chroma differently)."""
        import cv2

        height, width = self.shape
        left = min(max(0, int(np.floor(x0))), width - 1)
        top = min(max(0, int(np.floor(y0))), height - 1)
        right = min(width, max(int(np.ceil(x1)), left + 1))
        bottom = min(height, max(int(np.ceil(y1)), top + 1))
        planes = self._planes()
        if planes is None:
            return self.rgb()[top:bottom, left:right], left, top
        left, top = left & ~1, top & ~1  # whole chroma samples
        right, bottom = min(width, right + (right & 1)), min(height, bottom + (bottom & 1))
        y, u, v = planes
        h, w = bottom - top, right - left
        packed = np.empty((h * 3 // 2, w), np.uint8)
        packed[:h] = y[top:bottom, left:right]
        chroma = packed[h:].reshape(2, -1)
        chroma[0] = u[top // 2 : bottom // 2, left // 2 : right // 2].ravel()
        chroma[1] = v[top // 2 : bottom // 2, left // 2 : right // 2].ravel()
        return cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420), left, top

    def grey(self) -> np.ndarray:
        """Grey uint8 (H, W): for yuv420p video, the decoded Y plane expanded to full range (the
        values of swscale's conversion, without converting the frame)."""
        if self._grey is None:
            import cv2

            planes = self._planes()
            if planes is not None:
                self._grey = cv2.LUT(planes[0], LUMA_TO_GREY)
            elif self._rgb is not None or isinstance(self._source, Path):
                self._grey = cv2.cvtColor(self.rgb(), cv2.COLOR_RGB2GRAY)
            else:
                grey = self._source.to_ndarray(format="gray")
                if self.rotation:
                    grey = np.ascontiguousarray(np.rot90(grey, k=self.rotation // 90))
                self._grey = grey
        return self._grey


def iter_lazy(
    path: str | Path, target_fps: float | None = None, folder_fps: float = 30.0
) -> Iterator[LazyFrame]:
    """Yield the (upright) frames of a video file or frame folder, not yet converted to RGB.

    Frames of image folders get the time index / folder_fps.
    """
    path = Path(path)
    if path.is_dir():
        keep = Resampler(float(folder_fps), target_fps)
        for index, file in enumerate(frame_files(path)):
            if keep.keep(index):
                yield LazyFrame(file, index / float(folder_fps))
        return
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: same frames, ~1.5x faster on 2 cores
            stream.thread_count = DECODE_THREADS
            fps = float(stream.average_rate or stream.guessed_rate or 0) or folder_fps
            keep = Resampler(fps, target_fps)
            rotation = None
            for index, frame in enumerate(container.decode(stream)):
                if rotation is None:
                    rotation = _rotation(frame)
                if keep.keep(index, frame.time):
                    yield LazyFrame(frame, frame.time, rotation)
    except Exception as err:
        raise VideoError(f"{path}: decoding failed ({decode_reason(err)})") from None


def iter_frames(
    path: str | Path, target_fps: float | None = None, folder_fps: float = 30.0
) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or frame folder as RGB uint8 (H, W, 3) arrays."""
    for frame in iter_lazy(path, target_fps, folder_fps):
        yield frame.rgb()


def decode_options(record: dict) -> dict:
    """iter_lazy/iter_frames keyword arguments for a row of videos.csv."""
    target = record.get("target_fps")
    target = float(target) if target not in (None, "") and np.isfinite(float(target)) else None
    return {"target_fps": target, "folder_fps": float(record.get("source_fps") or 30.0)}


def prefetched(items: Iterable, depth: int | None = None) -> Iterator:
    """The items of `items`, produced ahead by a background thread, at most `depth` waiting
    (default PREFETCH, none when DECODE_THREADS is 1): PyAV decodes with the GIL released, so
    decoding overlaps the consumer's work. Same items in the same order; an exception of
    `items` is raised here; closing this generator stops and closes `items`."""
    depth = (PREFETCH if DECODE_THREADS > 1 else 0) if depth is None else depth
    if depth <= 0:
        yield from items
        return
    waiting: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # noqa: BLE001 (raised again in the consumer)
            put((end, err))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # in this thread: a generator is closed where it runs

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = waiting.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


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
