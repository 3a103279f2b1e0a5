"""HDF5 helpers shared by the per-shard stages: one group or dataset per video.

Every per-shard file is written to a temporary name and renamed when complete, and carries a
root attribute `skipped` (JSON: video_id → reason) for the videos that stage could not use.

Inside a shard, finished videos are kept as they finish (`Resume`): a shard job killed half
way (node failure, time limit, SIGKILL) redoes only the videos it had not finished.

`python -m pipeline.store --features F [F ...] --out index.csv` writes the index table of
feature files (the `feature_index` rule).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from pipeline.common import (
    ConfigError,
    DataError,
    atomic_path,
    digest,
    setup_logging,
    write_csv_atomic,
)

log = logging.getLogger(__name__)


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open a stage's HDF5 output for reading. One that cannot be read (cut short by a full
    disk or a copy, overwritten) is named, with the fix: delete it and the same command
    rebuilds it from its inputs (Snakemake sees it missing), then what depends on it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if not os.path.isfile(path):
            raise
        message = str(err)  # "Unable to … open file (truncated file: eof = …)"
        why = message.split(" (", 1)[1].rstrip(")") if " (" in message else message
        raise DataError(
            f"{path}: this cache file is damaged and cannot be read (HDF5: {why}; it has "
            f"{os.path.getsize(path)} bytes). Delete it (rm {shlex.quote(str(path))}) and run "
            "the same snakemake command again: it is rebuilt from its inputs, and what was "
            "computed from it after it"
        ) from None


@contextlib.contextmanager
def shard_writer(path: str | os.PathLike, **attrs) -> Iterator[tuple[h5py.File, dict]]:
    """Open a new shard file for writing; yield (file, skipped dict); commit atomically."""
    skipped: dict[str, str] = {}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in attrs.items():
                f.attrs[key] = value if isinstance(value, int | float | str) else json.dumps(value)
            yield f, skipped
            f.attrs["skipped"] = json.dumps(skipped, sort_keys=True)


def file_state(path: str | os.PathLike) -> list:
    """What identifies an input file's version for resuming: path, size, modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


class Resume:
    """Finished videos of a shard, kept beside its output in `<output>.parts/` until it commits.

    Each video, once written to the shard file, is also copied to its own small HDF5 file
    (written atomically), tagged with a key: the stage's settings and the identity (path,
    size, mtime) of its inputs. A rerun of the shard restores every video whose key still
    matches instead of computing it again; a changed setting or input invalidates the part.
    `clear()` after the shard file is committed removes the folder. The folder is not a
    Snakemake output, so Snakemake leaves it when it deletes a failed job's outputs.
    """

    def __init__(self, out_path: str | os.PathLike, key: object):
        self.dir = Path(str(out_path) + ".parts")
        self.key = digest(key, 32)
        self.restored = 0

    def _path(self, video_id: str) -> Path:
        return self.dir / f"{hashlib.sha1(video_id.encode()).hexdigest()[:20]}.h5"

    def _key(self, extra: object) -> str:
        return self.key if extra is None else digest([self.key, extra], 32)

    def restore(self, video_id: str, out: h5py.File, skipped: dict, extra: object = None) -> bool:
        """Copy a finished video (or its recorded skip) into `out`; False if it must be done."""
        path = self._path(video_id)
        if not path.exists():
            return False
        try:
            with h5py.File(path, "r") as part:
                if (
                    part.attrs.get("key") != self._key(extra)
                    or part.attrs.get("video_id") != video_id
                ):
                    return False
                if "skipped" in part.attrs:
                    skipped[video_id] = str(part.attrs["skipped"])
                else:
                    part.copy(part[video_id], out, video_id)
        except OSError:  # unreadable (should not happen: parts are written atomically)
            return False
        self.restored += 1
        return True

    def save(self, video_id: str, out: h5py.File, skipped: dict, extra: object = None) -> None:
        """Keep the video just written to `out` (or its skip reason) for a rerun."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(video_id)) as tmp:
            with h5py.File(tmp, "w") as part:
                part.attrs["key"] = self._key(extra)
                part.attrs["video_id"] = video_id
                if video_id in skipped:
                    part.attrs["skipped"] = skipped[video_id]
                else:
                    out.copy(out[video_id], part, video_id)

    def clear(self) -> None:
        if self.restored:
            log.info("%d videos restored from %s", self.restored, self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def read_skipped(path: str | os.PathLike) -> dict[str, str]:
    with open_h5(path) as f:
        return json.loads(f.attrs.get("skipped", "{}"))


def index_table(paths: list[str | Path]):
    """One row per video dataset of feature files: where it is and what it holds (pandas)."""
    import pandas as pd

    rows = []
    for path in paths:
        with open_h5(path) as f:
            common = {k: f.attrs.get(k, "") for k in ("backbone", "kind", "config_hash")}
            common["weights_digest"] = f.attrs.get("weights_digest", "")
            for vid, ds in f.items():
                rows.append(
                    {
                        "video_id": vid,
                        "file": str(path),
                        "n_frames": ds.shape[0],
                        "shape": "x".join(map(str, ds.shape[1:])),
                        "dtype": str(ds.dtype),
                        "fps": float(ds.attrs.get("fps", float("nan"))),
                        "valid_fraction": float(ds.attrs.get("valid_fraction", float("nan"))),
                        **common,
                    }
                )
    return pd.DataFrame(rows)


def frame_chunks(shape: tuple[int, ...], frames: int = 16) -> tuple[int, ...]:
    """Chunk shape for a (T, ...) array: `frames` frames per chunk (one clip read ≈ 1–2 chunks)."""
    return (max(1, min(frames, shape[0])), *shape[1:])


class Clips:
    """What every reader shares: clips cut from `video(video_id)` (T, ...)."""

    def video(self, video_id: str):
        raise NotImplementedError

    def clip(self, video_id: str, start: int, stop: int, length: int) -> np.ndarray:
        """Frames [start, stop) of a video as (length, ...), padded by repeating the last frame."""
        return pad_clip(self.video(video_id)[start:stop], length)

    def clips(self, table, length: int) -> np.ndarray:
        """Stack the clips of a clips.csv table (N rows) into (N, length, ...), one read per video."""
        out = []
        for vid, rows in table.groupby("video_id", sort=False):
            data = self.video(vid)[: int(rows.stop.max())]
            out.extend(
                (i, pad_clip(data[s:e], length))
                for i, s, e in zip(rows.index, rows.start, rows.stop, strict=True)
            )
        order = {i: k for k, i in enumerate(table.index)}
        out.sort(key=lambda pair: order[pair[0]])
        return np.stack([clip for _, clip in out])

    def close(self) -> None:
        """Nothing held by default."""


class ClipReader(Clips):
    """Random access to clips in per-shard feature files, by (video_id, start, stop).

    Files are opened lazily, one handle per process, so a reader can be shared with
    multi-worker DataLoaders (each worker opens its own handles after fork).
    """

    def __init__(self, paths: list[str | Path]):
        self.paths = [str(p) for p in paths]
        self.index: dict[str, str] = {}
        for path in self.paths:
            with open_h5(path) as f:
                for vid in f:
                    self.index[vid] = path
        self._handles: dict[tuple[int, str], h5py.File] = {}

    def _file(self, path: str) -> h5py.File:
        key = (os.getpid(), path)
        if key not in self._handles:
            self._handles[key] = open_h5(path)
        return self._handles[key]

    def video(self, video_id: str) -> h5py.Dataset:
        if video_id not in self.index:
            raise KeyError(f"video {video_id!r} is in none of the feature files {self.paths}")
        return self._file(self.index[video_id])[video_id]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


class FusedReader(Clips):
    """Several backbones' features of the same frames side by side (a fused backbone "a+b").

    `groups` holds one list of feature files per backbone, in the order of the fused name;
    a video's (T, D1 + D2 + ...) features are the backbones' (T, Di) ones concatenated.
    """

    def __init__(self, groups: list[list[str | Path]]):
        self.readers = [ClipReader(paths) for paths in groups]

    def video(self, video_id: str) -> np.ndarray:
        parts = [np.asarray(r.video(video_id)[:]) for r in self.readers]
        if len({len(p) for p in parts}) != 1:
            counts = ", ".join(
                f"{len(p)} in {Path(r.paths[0]).parent}"
                for p, r in zip(parts, self.readers, strict=True)
            )
            raise DataError(
                f"video {video_id!r}: the fused backbones have different frame counts ({counts}); "
                "their features were extracted from different aligned faces. Rebuild them from "
                "the same ones: delete those feature folders and run the DAG again"
            )
        return np.concatenate(parts, axis=-1)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


NORMALIZE = ("none", "per_subject", "calibrated")


class Calibration:
    """Person calibration (`cv.normalize`, or a model's own `normalize`), the one
    implementation: training (`CalibratedReader`), prediction and the live stream call it.

    - `none`: features as they are.
    - `per_subject` (transductive): standardised with the mean and std of the person's own
      frames (`own`: their `frame_sums`): in training every frame of the subject's videos, test
      videos included (labels are never used), the way OpenFace calibrates action units per
      person; for a new video its own frames; in a stream the frames seen so far.
    - `calibrated` (inductive for the clip): with the statistics of the person's *other*
      videos only (`others`: their `frame_sums`), never the frames standardised; a deployment
      records the person once, unlabelled, and calibrates on that recording.

    Features constant over the calibration frames are only centred.
    """

    def __init__(self, normalize: str, others: np.ndarray | None = None):
        if normalize not in NORMALIZE:
            raise ConfigError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if normalize == "calibrated" and others is None:
            raise ConfigError("normalize calibrated needs the person's other videos")
        self.normalize = normalize
        self.others = None if others is None else stats_of(others)

    def __call__(self, frames, own: np.ndarray | None = None) -> np.ndarray:
        """(T, ...) frames standardised as the protocol says; `own` (per_subject): the
        `frame_sums` of the person's frames, by default of `frames` themselves."""
        if self.normalize == "none":
            return frames
        if self.normalize == "calibrated":
            return standardise(frames, *self.others)
        return standardise(frames, *stats_of(frame_sums(frames) if own is None else own))


class CalibratedReader(Clips):
    """Clips of another reader, each video's frames standardised per person (`Calibration`):
    `per_subject` with every frame of the subject's videos listed in `subject_of`,
    `calibrated` with the subject's other videos (at least two videos per subject)."""

    def __init__(self, reader: Clips, subject_of: dict[str, str], normalize: str):
        if normalize not in ("per_subject", "calibrated"):
            raise ValueError(f"unknown normalize {normalize!r}")
        self.reader = reader
        self.subject_of = dict(subject_of)
        sums = {vid: frame_sums(reader.video(vid)) for vid in sorted(self.subject_of)}
        totals: dict[str, np.ndarray] = {}
        for vid, subject in self.subject_of.items():
            totals[subject] = totals.get(subject, 0) + sums[vid]
        if normalize == "calibrated":
            videos = Counter(self.subject_of.values())
            alone = sorted(s for s, n in videos.items() if n < 2)
            if alone:
                raise ConfigError(
                    f"normalize calibrated standardises each video with its subject's other "
                    f"videos, but subject(s) {', '.join(map(str, alone))} have a single video; "
                    "use per_subject or none, or add videos"
                )
            self.person = {
                v: (Calibration(normalize, totals[s] - sums[v]), None)
                for v, s in self.subject_of.items()
            }
        else:
            by_subject = {s: Calibration(normalize) for s in totals}
            self.person = {v: (by_subject[s], totals[s]) for v, s in self.subject_of.items()}

    def video(self, video_id: str) -> np.ndarray:
        calibration, own = self.person[video_id]
        return calibration(self.reader.video(video_id), own)

    def close(self) -> None:
        self.reader.close()


def open_reader(
    paths: list[str | Path], normalize: str = "none", subject_of: dict[str, str] | None = None
) -> Clips:
    """A reader of the feature files `paths`: fused when they hold several backbones (grouped
    by their `backbone` attribute, in order of appearance), calibrated per person unless
    `normalize` is none."""
    groups: dict[str, list[str | Path]] = {}
    for path in paths:
        with open_h5(path) as f:
            name = str(f.attrs.get("backbone", ""))
        groups.setdefault(name, []).append(path)
    reader = ClipReader(paths) if len(groups) == 1 else FusedReader(list(groups.values()))
    if normalize == "none":
        return reader
    return CalibratedReader(reader, subject_of or {}, normalize)


def frame_sums(frames) -> np.ndarray:
    """(3, D) float64: frame count, per-feature sums and sums of squares of (T, ...) frames."""
    flat = np.asarray(frames[:], dtype=np.float64).reshape(len(frames), -1)
    return np.stack([np.full(flat.shape[1], len(flat), np.float64), flat.sum(0), (flat**2).sum(0)])


def stats_of(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from `frame_sums` (added over videos); a std of 0 becomes 1."""
    n = max(float(sums[0, 0]), 1.0)
    mean = sums[1] / n
    std = np.sqrt(np.maximum(sums[2] / n - np.square(mean), 0.0))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def frame_stats(videos) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of some videos (float64 sums); a std of 0
    (a feature constant over them) becomes 1, so standardising only centres it."""
    return stats_of(sum(frame_sums(frames) for frames in videos))


def standardise(frames, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(T, ...) frames as float32, each feature centred and scaled by mean and std."""
    frames = np.asarray(frames[:], dtype=np.float32)
    return ((frames.reshape(len(frames), -1) - mean) / std).reshape(frames.shape)


class ClipDataset:
    """A map-style dataset of the clips of a clips.csv table for torch's DataLoader.

    Item i is (clip (length, ...) array, row index). Works with any number of workers: the
    shared ClipReader opens one handle per process, so no HDF5 handle crosses a fork.
    """

    def __init__(self, paths: list[str | Path], table, length: int = 16):
        self.reader = ClipReader(paths)
        self.table = table.reset_index(drop=True)
        self.length = length

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        row = self.table.iloc[i]
        return self.reader.clip(row.video_id, int(row.start), int(row.stop), self.length), i


def pad_clip(frames: np.ndarray, length: int) -> np.ndarray:
    """(n, ...) → (length, ...): repeat the last frame when n < length."""
    if len(frames) == 0:
        raise ValueError("empty clip")
    if len(frames) >= length:
        return frames[:length]
    pad = np.repeat(frames[-1:], length - len(frames), axis=0)
    return np.concatenate([frames, pad])


def main(argv=None) -> None:

    ap = argparse.ArgumentParser(description="Index the video datasets of feature files as CSV.")
    ap.add_argument("--features", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    setup_logging()
    write_csv_atomic(args.out, index_table(args.features))


if __name__ == "__main__":
    from pipeline.common import run_main

    run_main(main)
