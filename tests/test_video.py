import hashlib
import subprocess
import sys

import numpy as np

from pipeline.datasets import demo
from pipeline.video import iter_frames, probe, write_video

RENDER = """
import sys
import numpy as np
from pipeline.datasets import demo
from pipeline.video import write_video
frames = demo.render_subject(0, "anger", 40, (320, 240), np.random.default_rng(5))
write_video(sys.argv[1], frames, fps=30)
"""


def test_encoding_is_byte_identical_across_processes(tmp_path):
    digests = set()
    for i in range(3):
        out = tmp_path / f"v{i}.mp4"
        subprocess.run([sys.executable, "-c", RENDER, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_written_video_reads_back_with_the_same_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = [
        np.full((48, 64, 3), v, np.uint8) + rng.integers(0, 3, (48, 64, 3), dtype=np.uint8)
        for v in (40, 120, 200)
    ]
    write_video(tmp_path / "x.mp4", frames, fps=25)
    info = probe(tmp_path / "x.mp4")
    assert (info.n_frames, info.fps, info.width, info.height) == (3, 25.0, 64, 48)
    back = list(iter_frames(tmp_path / "x.mp4"))
    assert [abs(int(b.mean()) - int(f.mean())) <= 3 for b, f in zip(back, frames, strict=True)] == [
        True
    ] * 3


def test_demo_portraits_load_from_installed_packages():
    for name in demo.PORTRAIT_LANDMARKS:
        image = demo.load_portrait(name)
        assert image.ndim == 3 and image.dtype == np.uint8 and min(image.shape[:2]) >= 400
