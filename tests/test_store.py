import os

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline.common import DataError
from pipeline.store import (
    ClipReader,
    index_table,
    open_h5,
    open_reader,
    pad_clip,
    read_skipped,
    shard_writer,
)


def test_pad_clip_repeats_the_last_frame():
    out = pad_clip(np.arange(3)[:, None], 5)
    assert out[:, 0].tolist() == [0, 1, 2, 2, 2]


def test_reader_serves_clips_in_table_order(tmp_path):
    paths = []
    for k, vids in enumerate((["a", "c"], ["b"])):
        path = tmp_path / f"shard-{k}.h5"
        with shard_writer(path) as (f, _):
            for v in vids:
                f.create_dataset(v, data=np.arange(20)[:, None] + 100 * ord(v))
        paths.append(path)
    reader = ClipReader(paths)
    table = pd.DataFrame({"video_id": ["b", "a", "b"], "start": [4, 0, 0], "stop": [20, 3, 16]})
    clips = reader.clips(table, 16)
    assert clips.shape == (3, 16, 1)
    assert clips[0, 0, 0] == 100 * ord("b") + 4 and clips[1, -1, 0] == 100 * ord("a") + 2
    np.testing.assert_array_equal(reader.clip("b", 0, 16, 16), clips[2])
    with pytest.raises(KeyError, match="zz"):
        reader.clip("zz", 0, 1, 1)


def test_shard_writer_leaves_nothing_when_interrupted(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), shard_writer(path) as (f, _):
        f.create_dataset("x", data=np.zeros(3))
        raise RuntimeError("killed")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_shard_writer_records_skips(tmp_path):
    path = tmp_path / "out.h5"
    with shard_writer(path, shard=1) as (_, skipped):
        skipped["v"] = "no face"
    with h5py.File(path) as f:
        assert f.attrs["shard"] == 1 and "no face" in f.attrs["skipped"]


def test_clip_dataset_works_with_multi_worker_dataloaders(tmp_path):
    import os

    import torch
    from torch.utils.data import DataLoader

    from pipeline.store import ClipDataset

    path = tmp_path / "shard-0.h5"
    with shard_writer(path) as (f, _):
        for v in ("a", "b"):
            f.create_dataset(v, data=np.arange(40, dtype=np.float32)[:, None] + (v == "b") * 1000)
    table = pd.DataFrame({"video_id": ["a", "b"] * 4, "start": [0, 8] * 4, "stop": [16, 24] * 4})

    class Traced(ClipDataset):
        def __getitem__(self, i):
            clip, i = super().__getitem__(i)
            used = [pid for pid, _ in self.reader._handles if pid == os.getpid()]
            return clip, i, os.getpid(), len(used)

    dataset = Traced([path], table)
    serial = np.stack([dataset[i][0] for i in range(len(dataset))])  # the parent opens a handle
    loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    clips = np.concatenate([b[0].numpy() for b in batches])
    order = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(clips, serial[order])
    worker_pids = {int(p) for b in batches for p in b[2]}
    assert os.getpid() not in worker_pids and len(worker_pids) == 2
    assert all(int(n) == 1 for b in batches for n in b[3])  # each worker used its own handle
    assert torch.is_tensor(batches[0][0])


class CountingHog:
    """The real hog backbone, counting the videos it sees and crashing on request."""

    def __init__(self, crash_on=None):
        from pipeline.backbones.hog import HOG

        self.inner = HOG(size=32, cell=8)
        self.kind = self.inner.kind
        self.calls, self.crash_on = [], crash_on

    def describe(self):
        return self.inner.describe()

    def __call__(self, frames):
        self.calls.append(len(frames))
        if len(self.calls) == self.crash_on:
            raise RuntimeError("node lost")
        return self.inner(frames)


def aligned_shard(path, videos=4):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for v in range(videos):
            g = f.create_group(f"v{v}")
            g.create_dataset(
                "frames", data=rng.integers(0, 255, (10 + v, 48, 48, 3), dtype=np.uint8)
            )
            g.create_dataset("valid", data=np.ones(10 + v, bool))
            g.attrs["fps"] = 30.0


def test_a_crashed_shard_redoes_only_its_unfinished_videos(tmp_path):
    from pipeline.features import extract_shard

    aligned_shard(tmp_path / "aligned.h5")
    clean = CountingHog()
    extract_shard(
        clean, "hog", {"size": 32}, str(tmp_path / "aligned.h5"), str(tmp_path / "clean.h5")
    )
    out = tmp_path / "shard.h5"
    crashing = CountingHog(crash_on=3)  # dies on the third video
    with pytest.raises(RuntimeError):
        extract_shard(crashing, "hog", {"size": 32}, str(tmp_path / "aligned.h5"), str(out))
    assert not out.exists() and len(list((tmp_path / "shard.h5.parts").iterdir())) == 2
    again = CountingHog()
    extract_shard(again, "hog", {"size": 32}, str(tmp_path / "aligned.h5"), str(out))
    assert again.calls == [12, 13]  # videos v2 and v3 only
    assert not (tmp_path / "shard.h5.parts").exists()
    with h5py.File(out) as a, h5py.File(tmp_path / "clean.h5") as b:
        assert list(a) == list(b) == ["v0", "v1", "v2", "v3"]
        for vid in a:
            np.testing.assert_array_equal(a[vid][:], b[vid][:])
            assert dict(a[vid].attrs) == dict(b[vid].attrs)


def test_changed_settings_or_inputs_invalidate_finished_videos(tmp_path):
    from pipeline.features import extract_shard

    aligned_shard(tmp_path / "aligned.h5")

    def crash_on_the_third_video(out: str) -> None:
        with pytest.raises(RuntimeError):
            extract_shard(
                CountingHog(crash_on=3), "hog", {"size": 32}, str(tmp_path / "aligned.h5"), out
            )

    crash_on_the_third_video(str(tmp_path / "s.h5"))
    changed = CountingHog()
    extract_shard(
        changed,
        "hog",
        {"size": 32, "cell": 4},
        str(tmp_path / "aligned.h5"),
        str(tmp_path / "s.h5"),
    )
    assert len(changed.calls) == 4  # other settings: nothing reused
    crash_on_the_third_video(str(tmp_path / "t.h5"))
    aligned_shard(tmp_path / "aligned.h5", videos=4)  # the input was rewritten
    fresh = CountingHog()
    extract_shard(fresh, "hog", {"size": 32}, str(tmp_path / "aligned.h5"), str(tmp_path / "t.h5"))
    assert len(fresh.calls) == 4


def test_resume_restores_recorded_skips(tmp_path):
    from pipeline.store import Resume

    with shard_writer(tmp_path / "a.h5") as (f, skipped):
        resume = Resume(tmp_path / "a.h5", {"k": 1})
        skipped["bad"] = "no face found"
        resume.save("bad", f, skipped)
    with shard_writer(tmp_path / "a.h5.again") as (f, skipped):
        assert Resume(tmp_path / "a.h5", {"k": 1}).restore("bad", f, skipped)
        assert skipped == {"bad": "no face found"} and "bad" not in f
        assert not Resume(tmp_path / "a.h5", {"k": 2}).restore("bad", f, {})


def test_a_truncated_cache_file_is_named_with_its_fix(tmp_path):
    """A feature shard cut to half its size (a full disk, a copy cut short), its mtime kept so
    Snakemake sees nothing: the reader names the file, says it is damaged and how it is rebuilt,
    instead of h5py's "Unable to synchronously open file (truncated file: eof = …)"."""
    path = tmp_path / "shard-0.h5"
    with shard_writer(path) as (f, _):
        f.create_dataset("a", data=np.random.default_rng(0).random((200, 64)))
    stat = path.stat()
    with open(path, "r+b") as f:
        f.truncate(stat.st_size // 2)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for read in (open_reader, ClipReader, index_table):
        with pytest.raises(DataError, match="cache file is damaged") as caught:
            read([path])
        assert str(path) in str(caught.value) and f"rm {path}" in str(caught.value)
    with pytest.raises(DataError, match="truncated file"):
        read_skipped(path)
    with pytest.raises(FileNotFoundError):  # a missing file stays what it is
        open_h5(tmp_path / "missing.h5")
