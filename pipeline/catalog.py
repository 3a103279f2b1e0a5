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
    """One backbone or model: where its class lives, what it consumes or produces.

    `target` is "module:Class". A per-fold backbone (fitted on labels, so trained inside each
    fold on that fold's training subjects) names its training entry point in `train`,
    "module:function", called as `trainer(data: FoldFrames, **settings) -> TrainedBackbone`
    (see `pipeline.backbones`); the rules `train_backbone` and `extract_fold_features` run it
    and its class for every fold.
    """

    target: str
    kind: str  # VECTORS: (T, D) per-frame features; PIXELS: (T, H, W, C) uint8 clips; ANY
    summary: str
    train: str | None = None
    tasks: tuple[str, ...] = ("classify",)  # models: classify, and/or regress (frame-wise)

    @property
    def per_fold(self) -> bool:
        return self.train is not None


BACKBONES: dict[str, Entry] = {
    "hog": Entry("pipeline.backbones.hog:HOG", VECTORS, "HOG descriptors of the aligned face"),
    "pixels": Entry("pipeline.backbones.pixels:Pixels", PIXELS, "aligned face crops, resized"),
    "fer-minixception": Entry(
        "pipeline.backbones.fer_minixception:FERMiniXception",
        VECTORS,
        "FER2013 mini-Xception: 128 pooled activations + 7 class probabilities",
    ),
    "facenet": Entry(
        "pipeline.backbones.facenet:FaceNet",
        VECTORS,
        "InceptionResnetV1 face embedding (local weights)",
    ),
    "geometry": Entry(
        "pipeline.backbones.geometry:Geometry",
        VECTORS,
        "68-landmark shape undone of head pose: point offsets, brow/eye/mouth distances, angles",
    ),
    "blendshapes": Entry(
        "pipeline.backbones.mediapipe_face:Blendshapes",
        VECTORS,
        "MediaPipe Face Landmarker's 52 blendshape scores (action-unit-like) of the aligned face",
    ),
    "mesh": Entry(
        "pipeline.backbones.mediapipe_face:Mesh",
        VECTORS,
        "MediaPipe's 468-point face mesh undone of head pose (3D), displacements in cm",
    ),
    "fer-finetuned": Entry(
        "pipeline.backbones.fer_finetuned:FERFinetuned",
        VECTORS,
        "FER2013 mini-Xception fine-tuned per fold on the training subjects' frames",
        train="pipeline.backbones.fer_finetuned:train_fold",
    ),
    "resnet-attention": Entry(
        "pipeline.backbones.resnet_attention:ResNetAttention",
        VECTORS,
        "ResNet with channel attention, trained per fold on the training subjects",
        train="pipeline.backbones.resnet_attention:train_fold",
    ),
    "onnx": Entry(
        "pipeline.backbones.onnx:OnnxBackbone",
        VECTORS,
        "any frame model exported to ONNX, from a local file (onnx@label: several)",
    ),
}

TASKS = ("classify", "regress")
BOTH = TASKS

MODELS: dict[str, Entry] = {
    "gru": Entry(
        "pipeline.models.gru:GRUClassifier",
        VECTORS,
        "GRU over per-frame feature vectors",
        tasks=BOTH,
    ),
    "c3d": Entry("pipeline.models.c3d:C3D", PIXELS, "C3D-style 3D-CNN over pixel clips"),
    "pyranet3d": Entry(
        "pipeline.models.pyranet3d:PyraNet3D",
        PIXELS,
        "3DPyraNet / EmoP3D pyramidal neurons over pixel clips",
    ),
    "cnn3d_convlstm_spp": Entry(
        "pipeline.models.cnn3d_convlstm_spp:CNN3DConvLSTMSPP",
        PIXELS,
        "3D-CNN + ConvLSTM + weighted spatial pyramid pooling (Al Chanti & Caplier 2018)",
    ),
    "cnn_lstm_partial": Entry(
        "pipeline.models.cnn_lstm_partial:CNNLSTMPartial",
        VECTORS,
        "CNN-LSTM with a partial-sequence intensity objective (Baddar & Ro 2017)",
    ),
    "mstcn": Entry(
        "pipeline.models.mstcn:MSTCN",
        VECTORS,
        "multi-stage temporal convolutional network (MS-TCN)",
        tasks=BOTH,
    ),
    "transformer": Entry(
        "pipeline.models.transformer:TemporalTransformer",
        VECTORS,
        "transformer encoder over per-frame features",
        tasks=BOTH,
    ),
    "meanpool": Entry(
        "pipeline.models.meanpool:MeanPool",
        ANY,
        "baseline: logistic regression on time-averaged features (scikit-learn)",
    ),
    "statspool": Entry(
        "pipeline.models.statspool:StatsPool",
        VECTORS,
        "baseline: logistic regression on mean, std, min, max, slope over the clip",
    ),
    "ridge": Entry(
        "pipeline.models.ridge:RidgeBaseline",
        VECTORS,
        "baseline (task regress): ridge regression on the clip's mean features",
        tasks=("regress",),
    ),
}


FUSE = "+"  # "geometry+fer-minixception": one model on several backbones' features at once
VARIANT = "@"  # "statspool@calibrated", "onnx@hsemotion": another instance, its own settings


def parts(backbone: str) -> list[str]:
    """The backbones a (possibly fused) backbone name stands for, in order."""
    return backbone.split(FUSE)


def base(model: str) -> str:
    """The catalog model or backbone of a configured name ("statspool@calibrated" →
    "statspool", "onnx@hsemotion" → "onnx")."""
    return model.split(VARIANT, 1)[0]


def lookup(table: dict[str, Entry], name: str, what: str) -> Entry:
    """The entry called `name` (a variant "name@label" is its name's entry); an unknown
    name is an error listing the known ones."""
    name = base(name)
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; known {what}s: {', '.join(sorted(table))}")
    return table[name]


def resolve(target: str):
    """Import "module:attribute" and return the attribute."""
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load(table: dict[str, Entry], name: str, what: str):
    """The class of `name` (its module is imported now, not at parse time)."""
    return resolve(lookup(table, name, what).target)


def check_task(model: str, task: str) -> None:
    """A ConfigError when `model` cannot do `task` (classify, or regress: frame-wise)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if task not in lookup(MODELS, model, "model").tasks:
        able = sorted(name for name, entry in MODELS.items() if task in entry.tasks)
        raise ConfigError(
            f"model {model!r} cannot {task}; models that can: {', '.join(able)} (leave the "
            f"others out of the run with `models: {{{base(model)}: false}}`)"
        )


def backbone_entry(name: str) -> Entry:
    """The catalog entry of a configured backbone name (a variant "onnx@label" is onnx's)."""
    return lookup(BACKBONES, name, "backbone")


def trainer(name: str):
    """The training entry point of per-fold backbone `name`."""
    entry = lookup(BACKBONES, name, "backbone")
    if not entry.per_fold:
        raise ConfigError(f"backbone {name!r} is not trained per fold; it has no trainer")
    return resolve(entry.train)


def experiments(config: dict) -> list[tuple[str, str]]:
    """(model, backbone) pairs to train, checked against each other.

    A model trains on the backbones it lists under `backbones`, or else on every configured
    backbone of the kind it takes. A listed name "a+b" fuses vector backbones: the model gets
    their per-frame features side by side.
    """
    configured = config.get("backbones") or {}
    for name in configured:
        lookup(BACKBONES, name, "backbone")
    pairs = []
    task = config.get("task", "classify")
    for model, params in (config.get("models") or {}).items():
        takes = lookup(MODELS, model, "model").kind
        check_task(model, task)
        wanted = (params or {}).get("backbones")
        if wanted is None:
            wanted = [b for b in configured if takes in (ANY, backbone_entry(b).kind)]
            if not wanted:
                raise ConfigError(
                    f"model {model!r} takes {takes}, but no configured backbone gives {takes}"
                )
        for backbone in wanted:
            for part in parts(backbone):
                lookup(BACKBONES, part, "backbone")
                if part not in configured:
                    raise ConfigError(
                        f"model {model!r} asks for backbone {part!r}, which is not under "
                        "`backbones:`"
                    )
            kinds = {backbone_entry(part).kind for part in parts(backbone)}
            if len(parts(backbone)) > 1 and kinds != {VECTORS}:
                raise ConfigError(
                    f"model {model!r}: {backbone!r} fuses backbones that give "
                    f"{', '.join(sorted(kinds))}; only vector backbones can be fused"
                )
            (gives,) = kinds
            if takes not in (ANY, gives):
                raise ConfigError(
                    f"model {model!r} takes {takes} but backbone {backbone!r} gives {gives}; "
                    f"pair it with one of: {', '.join(b for b in configured if backbone_entry(b).kind == takes) or '(none configured)'}"
                )
            pairs.append((model, backbone))
    if not pairs:
        raise ConfigError("no model is configured under `models:`")
    return pairs
