"""Names of the backbones and temporal models, and what each consumes or produces.

This module is deliberately light (no torch import): the Snakefile uses it at parse time to
refuse an impossible model × backbone pairing before any job runs. The classes themselves
live in `pipeline/backbones/<name>.py` and `pipeline/models/<name>.py`, loaded on demand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipeline.common import ConfigError

VECTORS, PIXELS = "vectors", "pixels"
ANY = "any"  # a model that takes either kind (meanpool)


@dataclass(frozen=True)
class Entry:
    module: str
    kind: str  # VECTORS: (T, D) per-frame features; PIXELS: (T, H, W, C) uint8 clips; ANY
    summary: str
    per_fold: bool = False  # fitted on labels: trained and extracted inside each fold


BACKBONES: dict[str, Entry] = {
    "hog": Entry("pipeline.backbones.hog", VECTORS, "HOG descriptors of the aligned face"),
    "pixels": Entry("pipeline.backbones.pixels", PIXELS, "aligned face crops, resized"),
    "fer-minixception": Entry(
        "pipeline.backbones.fer_minixception",
        VECTORS,
        "FER2013 mini-Xception: 128 pooled activations + 7 class probabilities",
    ),
    "facenet": Entry(
        "pipeline.backbones.facenet", VECTORS, "InceptionResnetV1 face embedding (local weights)"
    ),
    "resnet-attention": Entry(
        "pipeline.backbones.resnet_attention",
        VECTORS,
        "ResNet with channel attention, trained per fold on the training subjects",
        per_fold=True,
    ),
}

MODELS: dict[str, Entry] = {
    "gru": Entry("pipeline.models.gru", VECTORS, "GRU over per-frame feature vectors"),
    "c3d": Entry("pipeline.models.c3d", PIXELS, "C3D-style 3D-CNN over pixel clips"),
    "pyranet3d": Entry(
        "pipeline.models.pyranet3d", PIXELS, "3DPyraNet / EmoP3D pyramidal neurons over pixel clips"
    ),
    "cnn3d_convlstm_spp": Entry(
        "pipeline.models.cnn3d_convlstm_spp",
        PIXELS,
        "3D-CNN + ConvLSTM + weighted spatial pyramid pooling (Al Chanti & Caplier 2018)",
    ),
    "cnn_lstm_partial": Entry(
        "pipeline.models.cnn_lstm_partial",
        VECTORS,
        "CNN-LSTM with a partial-sequence intensity objective (Baddar & Ro 2017)",
    ),
    "mstcn": Entry(
        "pipeline.models.mstcn", VECTORS, "multi-stage temporal convolutional network (MS-TCN)"
    ),
    "transformer": Entry(
        "pipeline.models.transformer", VECTORS, "transformer encoder over per-frame features"
    ),
    "meanpool": Entry(
        "pipeline.models.meanpool",
        ANY,
        "baseline: logistic regression on time-averaged features (scikit-learn)",
    ),
}


def lookup(table: dict[str, Entry], name: str, what: str) -> Entry:
    """The entry called `name`; an unknown name is an error listing the known ones."""
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; known {what}s: {', '.join(sorted(table))}")
    return table[name]


def load(table: dict[str, Entry], name: str, what: str, attr: str):
    """Import the module of `name` and return its `attr` (the class)."""
    return getattr(importlib.import_module(lookup(table, name, what).module), attr)


def experiments(config: dict) -> list[tuple[str, str]]:
    """(model, backbone) pairs to train, checked against each other.

    A model trains on the backbones it lists under `backbones`, or else on every configured
    backbone of the kind it takes.
    """
    configured = config.get("backbones") or {}
    for name in configured:
        lookup(BACKBONES, name, "backbone")
    pairs = []
    for model, params in (config.get("models") or {}).items():
        takes = lookup(MODELS, model, "model").kind
        wanted = (params or {}).get("backbones")
        if wanted is None:
            wanted = [b for b in configured if takes in (ANY, BACKBONES[b].kind)]
            if not wanted:
                raise ConfigError(
                    f"model {model!r} takes {takes}, but no configured backbone gives {takes}"
                )
        for backbone in wanted:
            gives = lookup(BACKBONES, backbone, "backbone").kind
            if backbone not in configured:
                raise ConfigError(
                    f"model {model!r} asks for backbone {backbone!r}, which is not under `backbones:`"
                )
            if takes not in (ANY, gives):
                raise ConfigError(
                    f"model {model!r} takes {takes} but backbone {backbone!r} gives {gives}; "
                    f"pair it with one of: {', '.join(b for b in configured if BACKBONES[b].kind == takes) or '(none configured)'}"
                )
            pairs.append((model, backbone))
    if not pairs:
        raise ConfigError("no model is configured under `models:`")
    return pairs
