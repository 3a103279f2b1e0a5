"""The `extract_features` stage: run one backbone over the aligned faces of one shard.

Output `features/{backbone}/shard-{k}.h5`: one dataset per video, named by video_id,

    vectors backbones: (T, D) float16      pixels backbone: (T, H, W, C) uint8

computed from the aligned face crops, or from the aligned dataset a backbone's `reads` names
(`geometry`: the pose-normalised landmarks `points`),

row t being decoded frame t of the video (all of them: frames without a face hold the
features of the nearest face, see `valid`), chunked 16 frames along time and gzip-compressed.
File attributes: backbone, kind, params (JSON), config_hash (of params), weights_digest
(sha256 of the weights file, "" for backbones without weights), input (the backbone's input
size, JSON), describe (JSON), skipped (JSON). Dataset attributes: fps, n_frames, first_frame
(0), valid_fraction. Frames are processed BATCH at a time: memory does not grow with video
length. The rule `feature_index` lists every dataset in `features/{backbone}/index.csv`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence

import h5py
import numpy as np

from pipeline import catalog
from pipeline.backbones import build_backbone
from pipeline.common import ConfigError, digest, parse_params, run_main, setup_logging
from pipeline.store import Resume, file_state, frame_chunks, open_h5, shard_writer

log = logging.getLogger(__name__)

BATCH = 64


def source(backbone, group: h5py.Group, where: str) -> h5py.Dataset:
    """The aligned dataset `backbone` reads: the face crops (`frames`), or what its `reads`
    names (e.g. `points`, the pose-normalised landmarks of `geometry`)."""
    name = getattr(backbone, "reads", "frames")
    if name not in group:
        raise ConfigError(
            f"{where}: backbone needs aligned `{name}`, which this video's aligned group lacks "
            "(68-point landmarks: set face.landmarks: dlib and rerun detect_faces and frontalize)"
        )
    return group[name]


def as_stored(backbone, feats: np.ndarray) -> np.ndarray:
    """A backbone's outputs as the feature store keeps them (vectors as float16): what every
    model is trained on, so prediction and the live stream round them the same way."""
    return feats.astype(np.float16) if backbone.kind == catalog.VECTORS else feats


def batches(backbone, frames) -> Iterator[tuple[int, np.ndarray]]:
    """(start, outputs) of `backbone` over aligned (T, ...) frames, batch by batch, as stored."""
    for start in range(0, len(frames), BATCH):
        yield start, as_stored(backbone, backbone(frames[start : start + BATCH]))


def features_of(backbone, frames) -> np.ndarray:
    """`backbone`'s (T, ...) outputs of one video's aligned frames, in memory (prediction)."""
    return np.concatenate([feats for _, feats in batches(backbone, frames)])


def extract(backbone, frames: h5py.Dataset, out: h5py.Group, name: str) -> h5py.Dataset:
    """Run `backbone` over an aligned (T, ...) dataset batch by batch into out[name]."""
    n = len(frames)
    ds = None
    for start, feats in batches(backbone, frames):
        if ds is None:
            shape = (n, *feats.shape[1:])
            ds = out.create_dataset(
                name,
                shape=shape,
                dtype=feats.dtype,
                chunks=frame_chunks(shape),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
        ds[start : start + len(feats)] = feats
    return ds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Extract backbone features for one shard.")
    ap.add_argument("--aligned", required=True, help="aligned/shard-{k}.h5")
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="the backbone's config section as JSON")
    ap.add_argument("--checkpoint", help="a per-fold backbone's trained model.pt")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = parse_params(args.params)
    backbone = build_backbone(args.backbone, params, args.checkpoint)
    try:
        extract_shard(backbone, args.backbone, params, args.aligned, args.out)
    finally:
        if hasattr(backbone, "close"):  # MediaPipe's landmarker: closed explicitly
            backbone.close()


def extract_shard(backbone, name: str, params: dict, aligned_path: str, out_path: str) -> None:
    """Run `backbone` over every video of an aligned shard file into a new feature file."""
    described = backbone.describe()
    attrs = {
        "backbone": name,
        "kind": backbone.kind,
        "params": params,
        "config_hash": digest(params),
        "weights_digest": getattr(backbone, "weights_digest", ""),
        "input": described.get("input", []),
        "describe": described,
    }
    resume = Resume(out_path, {"stage": "features", **attrs, "aligned": file_state(aligned_path)})
    with (
        open_h5(aligned_path) as aligned,
        shard_writer(out_path, **attrs) as (out, skipped),
    ):
        for vid in aligned:
            if resume.restore(vid, out, skipped):
                continue
            ds = extract(
                backbone, source(backbone, aligned[vid], f"{aligned_path}:{vid}"), out, vid
            )
            valid = aligned[vid]["valid"][:]
            ds.attrs["fps"] = aligned[vid].attrs["fps"]
            ds.attrs["n_frames"] = len(valid)
            ds.attrs["first_frame"] = 0
            ds.attrs["valid_fraction"] = float(valid.mean()) if len(valid) else 0.0
            resume.save(vid, out, skipped)
        log.info("%s: %d videos with backbone %s", out_path, len(aligned), name)
    resume.clear()


if __name__ == "__main__":
    run_main(main)
