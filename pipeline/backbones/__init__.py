"""Frame backbones: one module each, registered by name in `pipeline.catalog.BACKBONES`.

A backbone is a class with a typed keyword-only constructor (its config section's keys),
`kind` (catalog.VECTORS or PIXELS), `__call__(frames)` mapping aligned crops (N, S, S, 3)
uint8 to features (N, D) or pixels (N, H, W, C), and `describe()` (what the feature file
records: `columns` names the features; a backbone whose features are meaningful per frame,
like blendshapes, lists in `export` the columns the per-frame tables carry). `build_backbone`
makes one from its config section.

A *per-fold* backbone is fitted on labels, so it is trained inside each fold on that fold's
training subjects only. Its catalog entry names a trainer, "module:function", called by the
`train_backbone` stage as `trainer(data: FoldFrames, **settings) -> TrainedBackbone`; its
class then takes `checkpoint=` (the fold's model.pt) besides its own settings. A backbone's
settings are the keyword arguments of its class and, for a per-fold one, of its trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline import catalog
from pipeline.catalog import VECTORS
from pipeline.common import ConfigError, DataError, check_keys, keyword_names, resolve_device


class TorchBackbone:
    """Shared plumbing of the network backbones: device, batching, inference mode.

    Subclasses set `self.net` (a torch module), `dim`, and define `preprocess(frames)` (uint8
    crops → float32 network input) and `embed(x)` (a batch tensor → (B, dim) features).
    """

    kind = VECTORS
    dim: int

    def setup(self, net, device: str, batch: int) -> None:
        import torch

        self._torch = torch
        self.device = resolve_device(device)
        self.batch = batch
        self.net = net.eval().to(self.device)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, x):
        raise NotImplementedError

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed inputs (N, ...) → (N, dim) float32, `batch` at a time."""
        torch = self._torch
        outs = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch):
                x = torch.from_numpy(inputs[start : start + self.batch]).to(self.device)
                outs.append(self.embed(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops → (N, dim) float32."""
        return self.forward(self.preprocess(frames))


@dataclass
class FoldFrames:
    """What `train_backbone` hands a per-fold backbone's trainer: one fold's training videos.

    The test subjects' videos are not in `videos`; `frames()` reads only the videos listed.
    """

    aligned: list[str]  # aligned/shard-*.h5
    videos: pd.DataFrame  # video_id, subject, label of the fold's training videos
    classes: list[str]  # every class of the dataset, in label-index order
    fold: int

    def frames(self, per_video: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Up to `per_video` evenly spaced valid frames of every training video.

        Returns frames (N, S, S, 3) uint8, labels (N,) int64 class indices, and one row per
        frame (video_id, subject, label) for the inner split, in shard and video order.
        """
        import h5py

        wanted = self.videos.set_index("video_id")
        to_index = {c: i for i, c in enumerate(self.classes)}
        frames, rows = [], []
        for path in self.aligned:
            with h5py.File(path, "r") as f:
                for vid in f:
                    if vid not in wanted.index:
                        continue
                    valid = np.flatnonzero(f[vid]["valid"][:])
                    if not len(valid):
                        continue
                    spaced = np.linspace(0, len(valid) - 1, per_video).round().astype(int)
                    pick = valid[np.unique(spaced)]
                    frames.append(f[vid]["frames"][np.sort(pick)])
                    rec = wanted.loc[vid]
                    rows += [(vid, rec.subject, rec.label)] * len(pick)
        if not frames:
            raise DataError(
                f"fold {self.fold}: no valid frame in any of the {len(self.videos)} training "
                "videos; check the face QC in the report (results/qc/)"
            )
        table = pd.DataFrame(rows, columns=["video_id", "subject", "label"])
        labels = np.array([to_index[c] for c in table.label], np.int64)
        return np.concatenate(frames), labels, table


@dataclass
class TrainedBackbone:
    """What a per-fold trainer returns; `train_backbone` saves it as the fold's model.pt."""

    net: object  # the trained torch module: its state_dict is saved
    history: pd.DataFrame  # the engine's per-epoch history
    meta: dict = field(default_factory=dict)  # what the class needs to rebuild the network
    val_subjects: list[str] = field(default_factory=list)  # held out to choose the epoch


def backbone_settings(name: str) -> tuple[str, ...]:
    """Every key `backbones.<name>` may hold: its class's settings and its trainer's."""
    entry = catalog.lookup(catalog.BACKBONES, name, "backbone")
    keys = keyword_names(catalog.resolve(entry.target), skip=("self", "checkpoint"))
    if entry.per_fold:
        trainer = keyword_names(catalog.resolve(entry.train), skip=("data",))
        keys = (*keys, *(k for k in trainer if k not in keys))
    return keys


def pick(fn, params: dict, skip: tuple[str, ...] = ("self",)) -> dict:
    """The entries of `params` that `fn` takes as keyword arguments."""
    names = keyword_names(fn, skip=skip)
    return {k: v for k, v in params.items() if k in names}


def exported(name: str, backbone) -> list[tuple[int, str]]:
    """(feature index, "<name>:<column>") of the columns `backbone` (configured as `name`)
    exports to the per-frame tables: its `describe()`'s `export` list."""
    described = backbone.describe()
    keep = set(described.get("export") or ())
    columns = described.get("columns") or ()
    return [(i, f"{name}:{c}") for i, c in enumerate(columns) if c in keep]


def build_backbone(name: str, params: dict, checkpoint: str | None = None):
    """Backbone `name` with its config section `params` (a per-fold one with `checkpoint`)."""
    entry = catalog.lookup(catalog.BACKBONES, name, "backbone")
    check_keys(f"backbones.{name}", params, backbone_settings(name))
    cls = catalog.resolve(entry.target)
    kwargs = pick(cls, params)
    if entry.per_fold:
        if not checkpoint:
            raise ConfigError(
                f"{name} is trained per fold: extract it through the DAG (rule "
                f"extract_fold_features) or give checkpoint=results/backbones/{name}/fold<k>/"
                "model.pt"
            )
        kwargs["checkpoint"] = checkpoint
    try:
        return cls(**kwargs)
    except ConfigError as err:  # messages name the base section: name the variant's
        base = catalog.base(name)
        if base == name:
            raise
        raise ConfigError(str(err).replace(f"backbones.{base}", f"backbones.{name}")) from None
