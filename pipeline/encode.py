"""Writing videos: H.264 mp4, reproducibly (the demo data, the tests' clips, the benchmarks'
feeds). Reading them is `pipeline.video`'s."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int = 30,
    crf: int = 18,
    rotation: int = 0,
):
    """Encode RGB uint8 frames (even width and height) as H.264 mp4, reproducibly.

    `rotation` (degrees counter-clockwise) is written as display metadata, as phones do: the
    stored frames are as given, players (and this module's readers) rotate them.

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
                if rotation:
                    stream.set_display_rotation(rotation)
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
