import hashlib
import subprocess
import sys

import numpy as np

from pipeline.datasets import demo
from pipeline.encode import write_video
from pipeline.video import VideoInfo, iter_frames, probe

RENDER = """
import sys
import numpy as np
from pipeline.datasets import demo
from pipeline.encode import write_video
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


def test_rotation_metadata_is_applied_like_opencv_does(tmp_path):
    import cv2

    frames = np.zeros((3, 48, 64, 3), np.uint8)
    frames[:, :10, :20] = 255  # a mark in the stored top-left corner
    for rotation in (90, 180, 270):
        path = tmp_path / f"r{rotation}.mp4"
        write_video(path, frames, rotation=rotation)
        info = probe(path)
        upright = next(iter_frames(path))
        assert info.rotation == rotation
        assert (info.width, info.height) == (upright.shape[1], upright.shape[0])
        ok, reference = cv2.VideoCapture(str(path)).read()  # OpenCV rotates by default
        assert ok and reference.shape == upright.shape
        assert np.abs(upright.astype(int) - reference[..., ::-1]).mean() < 2


def test_target_fps_drops_frames_evenly_and_agrees_with_probe(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, np.zeros((30, 32, 32, 3), np.uint8), fps=30)
    info = probe(path, target_fps=10)
    frames = list(iter_frames(path, target_fps=10))
    assert info.fps == 10 and info.source_fps == 30 and info.n_frames == len(frames) == 10
    assert probe(path, target_fps=60).n_frames == 30  # never adds frames
    quick = probe(path, target_fps=10, count=False)  # the first frame only: the count unknown
    assert quick == VideoInfo(10.0, 0, 32, 32, 30.0, 0)
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i in range(12):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(folder / f"f{i}.png")
    kept = [f[0, 0, 0] // 20 for f in iter_frames(folder, target_fps=15, folder_fps=30)]
    assert kept == [0, 2, 4, 6, 8, 10] and probe(folder, 30, 15).n_frames == 6


def test_grey_and_regions_come_from_the_planes_like_whole_frame_conversion(tmp_path):
    import cv2

    from pipeline.video import iter_lazy

    path = tmp_path / "v.mp4"
    write_video(path, demo.render_subject(0, "anger", 3, (320, 240), np.random.default_rng(0)))
    for frame in iter_lazy(path):
        whole = frame._source.to_ndarray(format="rgb24")
        grey = frame._source.to_ndarray(format="gray")
        assert np.array_equal(frame.grey(), grey)  # swscale's values, without converting
        assert frame.shape == (240, 320)
        for box in [(51.3, 40.7, 180.2, 161.9), (-30, -10, 40, 30), (300, 200, 400, 300)]:
            part, left, top = frame.region(*box)
            assert left <= max(0, box[0]) and top <= max(0, box[1])
            assert left + part.shape[1] >= min(320, box[2]) and top + part.shape[0] >= min(
                240, box[3]
            )
            reference = whole[top : top + part.shape[0], left : left + part.shape[1]]
            diff = np.abs(part.astype(int) - reference)  # cv2's BT.601 vs swscale's chroma
            assert diff.max() <= 6 and diff.mean() < 1.5
        assert cv2.cvtColor(whole, cv2.COLOR_RGB2GRAY).shape == grey.shape


def test_prefetched_keeps_order_raises_errors_and_closes_its_source():
    import threading

    from pipeline.video import prefetched

    for depth in (0, 1, 3):
        assert list(prefetched(iter(range(50)), depth)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    got = []
    try:
        for item in prefetched(failing(), 2):
            got.append(item)
    except ValueError as err:
        assert "bad frame 3" in str(err)
    else:
        raise AssertionError("the source's error was not raised")
    assert got == [1, 2]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    gen = prefetched(endless(), 4)
    assert [next(gen) for _ in range(5)] == [0, 1, 2, 3, 4]
    gen.close()  # as when the consumer stops early: the thread ends, the source is closed
    assert closed.is_set() and threading.active_count() == before
