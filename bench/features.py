"""Benchmark of the feature store: extraction overhead, clip reads, cached vs on-the-fly training.

    .venv/bin/python bench/features.py [--videos 8] [--frames 250] [--backbone fer-minixception]

Aligned faces (rendered demo frames, 112×112, written as the frontalize stage writes them) are
made once; then, in one process on the same data:

1. Extraction: the `extract_features` code path (read aligned crops from HDF5, run the
   backbone, write float16 features) versus the bare backbone (preprocessing + forward) on
   the same frames already in memory. Target: >= 0.90 of the bare throughput.
2. Clip reads: all 16-frame clips (stride 8) read one at a time by random access with
   `ClipReader.clip` from the feature store versus copied from an in-memory array; also the
   batched `ClipReader.clips` (one read per video). The ratio is printed (no target).
3. One training epoch of the `gru` model (batch 32) on cached features versus the same epoch
   with the backbone run on the fly, batched: one forward pass over all the aligned frames
   of each batch's 32 clips. Target: >= 20x.

Every comparison times both sides the same way: `--repeat` runs each (default 3), the best
of them (the least disturbed on a noisy machine), after one untimed warm-up call of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.datasets import demo  # noqa: E402

SIZE = 112


def make_aligned(path: Path, videos: int, frames: int) -> dict[str, int]:
    """An aligned shard file of demo faces: `videos` videos of `frames` frames."""
    import cv2
    import h5py

    from pipeline.frontalize import DEFAULTS
    from pipeline.store import frame_chunks

    compression = None if DEFAULTS["compression"] == "none" else DEFAULTS["compression"]

    lengths = {}
    with h5py.File(path, "w") as f:
        for v in range(videos):
            rendered = demo.render_subject(
                v % 10, demo.EMOTIONS[v % 6], frames, (160, 120), np.random.default_rng(v)
            )
            crops = np.stack(
                [cv2.resize(fr[8:112, 28:132], (SIZE, SIZE)) for fr in rendered]
            ).astype(np.uint8)
            g = f.create_group(f"v{v:03d}")
            chunks = frame_chunks(crops.shape)
            g.create_dataset("frames", data=crops, chunks=chunks, compression=compression)
            g.create_dataset("valid", data=np.ones(frames, bool))
            g.attrs["fps"] = 30.0
            lengths[f"v{v:03d}"] = frames
    return lengths


def timed(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls after one untimed warm-up call (noisy machine: the
    minimum is the least disturbed). Both sides of every ratio are timed by this."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--backbone", default="fer-minixception")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each side (best kept)")
    args = ap.parse_args()
    timed_ = partial(timed, repeat=args.repeat)  # every side of every ratio alike

    import h5py
    import pandas as pd
    import torch

    from pipeline.backbones import build_backbone
    from pipeline.clips import window
    from pipeline.features import extract_shard
    from pipeline.models import build_model
    from pipeline.store import ClipReader, pad_clip

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    aligned = tmp / "aligned.h5"
    lengths = make_aligned(aligned, args.videos, args.frames)
    backbone = build_backbone(args.backbone, {"device": "cpu"})
    with h5py.File(aligned, "r") as f:
        frames = np.concatenate([f[v]["frames"][:] for v in lengths])
    n = len(frames)

    # 1. extraction through the stage vs the bare backbone in memory
    t_bare = timed_(lambda: backbone(frames))
    out = tmp / "features.h5"
    t_stage = timed_(lambda: extract_shard(backbone, args.backbone, {}, str(aligned), str(out)))
    result = {
        "frames": n,
        "backbone": args.backbone,
        "bare_fps": n / t_bare,
        "stage_fps": n / t_stage,
        "extraction_ratio": t_bare / t_stage,
    }

    # 2. clip reads: store vs memory
    table = pd.DataFrame(
        [(v, a, b) for v, n in lengths.items() for a, b in window(n, 16, 8)],
        columns=["video_id", "start", "stop"],
    )
    with h5py.File(out, "r") as f:
        memory = {v: f[v][:] for v in lengths}
    reader = ClipReader([out])

    def from_store():
        for row in table.itertuples():
            reader.clip(row.video_id, row.start, row.stop, 16)

    def from_memory():  # the same copy + padding as ClipReader.clip
        for row in table.itertuples():
            pad_clip(np.array(memory[row.video_id][row.start : row.stop]), 16)

    t_store, t_memory = timed_(from_store), timed_(from_memory)
    result.update(
        clips=len(table),
        store_clips_per_s=len(table) / t_store,
        memory_clips_per_s=len(table) / t_memory,
        clip_read_ratio=t_memory / t_store,
        store_batch_clips_per_s=len(table) / timed_(lambda: reader.clips(table, 16)),
    )

    # 3. one gru epoch: cached features vs backbone on the fly
    labels = torch.from_numpy(np.arange(len(table)) % 6)
    x_cached = torch.from_numpy(reader.clips(table, 16).astype(np.float32))
    model = build_model("gru", 6, tuple(x_cached.shape[1:]), {"hidden": 64, "proj": 128})
    model.fit_normalization(x_cached)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    f_aligned = h5py.File(aligned, "r")

    def step(xb, yb):
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()

    def epoch_cached():
        reader_epoch = ClipReader([out])
        for i in range(0, len(table), 32):
            rows = table.iloc[i : i + 32]
            xb = torch.from_numpy(reader_epoch.clips(rows, 16).astype(np.float32))
            step(xb, labels[i : i + 32])
        reader_epoch.close()

    def epoch_on_the_fly():  # batched: one backbone call per training batch
        for i in range(0, len(table), 32):
            rows = table.iloc[i : i + 32]
            clips = [
                pad_clip(f_aligned[r.video_id]["frames"][r.start : r.stop], 16)
                for r in rows.itertuples()
            ]
            feats = backbone(np.concatenate(clips)).reshape(len(clips), 16, -1)
            xb = torch.from_numpy(feats.astype(np.float16).astype(np.float32))
            step(xb, labels[i : i + 32])

    t_cached = timed_(epoch_cached)
    t_fly = timed_(epoch_on_the_fly)
    f_aligned.close()
    result.update(
        epoch_cached_s=t_cached,
        epoch_on_the_fly_s=t_fly,
        training_speedup=t_fly / t_cached,
        repeat=args.repeat,
    )
    report(result)


def report(result: dict) -> None:
    print(
        json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=2
        )
    )
    print(
        f"extraction {result['stage_fps']:.0f} frames/s vs bare {result['bare_fps']:.0f} -> "
        f"{result['extraction_ratio']:.3f} (target >= 0.90); clip reads store/memory "
        f"{result['clip_read_ratio']:.3f} ({result['store_clips_per_s']:.0f} vs "
        f"{result['memory_clips_per_s']:.0f} clips/s); gru epoch cached {result['epoch_cached_s']:.2f} s "
        f"vs on the fly (batched) {result['epoch_on_the_fly_s']:.2f} s -> "
        f"{result['training_speedup']:.1f}x (target >= 20); best of {result['repeat']} runs each"
    )


if __name__ == "__main__":
    main()
