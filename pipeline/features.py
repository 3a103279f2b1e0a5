"""The `extract_features` stage: run one backbone over the aligned faces of one shard.

Output `features/{backbone}/shard-{k}.h5`: one dataset per video, named by video_id,

    vectors backbones: (T, D) float16      pixels backbone: (T, H, W, C) uint8

chunked 16 frames along time and gzip-compressed. Attributes: backbone, kind, params (JSON),
and per dataset `fps`. Frames are processed `batch` at a time: memory does not grow with
video length.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import h5py
import numpy as np

from pipeline import catalog
from pipeline.common import digest, parse_params, run_main, setup_logging
from pipeline.store import frame_chunks, shard_writer

log = logging.getLogger(__name__)

BATCH = 64


def build_backbone(name: str, params: dict):
    return catalog.load(catalog.BACKBONES, name, "backbone", "Backbone")(**params)


def extract(backbone, frames: h5py.Dataset, out: h5py.Group, name: str) -> h5py.Dataset:
    """Run `backbone` over an aligned (T, S, S, 3) dataset batch by batch into out[name]."""
    n = len(frames)
    ds = None
    for start in range(0, n, BATCH):
        feats = backbone(frames[start : start + BATCH])
        if backbone.kind == catalog.VECTORS:
            feats = feats.astype(np.float16)
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
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = parse_params(args.params)
    backbone = build_backbone(args.backbone, params)
    attrs = {
        "backbone": args.backbone,
        "kind": backbone.kind,
        "params": params,
        "config_hash": digest(params),
    }
    with (
        h5py.File(args.aligned, "r") as aligned,
        shard_writer(args.out, **attrs) as (out, _skipped),
    ):
        out.attrs["describe"] = json.dumps(backbone.describe(), sort_keys=True)
        for vid in aligned:
            ds = extract(backbone, aligned[vid]["frames"], out, vid)
            ds.attrs["fps"] = aligned[vid].attrs["fps"]
        log.info("%s: %d videos with backbone %s", args.out, len(aligned), args.backbone)


if __name__ == "__main__":
    run_main(main)
