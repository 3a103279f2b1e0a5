"""Typed settings that several stages share, parsed once from the config.

- `Training`: what every trained thing (temporal model, per-fold backbone) is trained with;
  the engine (`pipeline.engine`) applies it. Its defaults are the schema's
  (`definitions.training`; a test checks that they agree).
- `Preprocessing` (with `BackboneSpec`): everything before a temporal model, written into
  each trained model and read back by prediction and the live stream.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from pipeline import catalog
from pipeline.common import ConfigError


@dataclass(frozen=True)
class Training:
    """Training settings shared by every trained model and per-fold backbone.

    Args:
        lr: learning rate (of Adam or SGD).
        epochs: training epochs (the most; early stopping may stop sooner).
        batch_size: samples per optimisation step.
        weight_decay: L2 weight decay.
        optimizer: adam, or sgd with `momentum`.
        momentum: SGD momentum.
        lr_step: multiply the learning rate by `lr_gamma` every lr_step epochs (0: constant).
        lr_gamma: that factor.
        augment: pixel models: true, false, or a mapping of strengths (`pipeline.augment`).
        val_subjects: fraction of the training subjects held out for choosing the epoch.
        patience: stop after this many epochs without a lower validation loss (0: never).
        refit: after choosing the epoch, train again on every training subject.
        balance: weighted (class-weighted loss), sampler (classes drawn equally often), none.
    """

    lr: float = 0.001
    epochs: int = 20
    batch_size: int = 32
    weight_decay: float = 0.0001
    optimizer: str = "adam"
    momentum: float = 0.9
    lr_step: int = 0
    lr_gamma: float = 0.1
    augment: bool | dict = True
    val_subjects: float = 0.2
    patience: int = 5
    refit: bool = False
    balance: str = "weighted"

    def __post_init__(self):
        if self.balance not in ("weighted", "sampler", "none"):
            raise ConfigError(f"balance must be weighted, sampler or none, got {self.balance!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, got {self.optimizer!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def take(cls, params: dict) -> tuple[Training, dict]:
        """(the training settings among `params`, the other keys)."""
        mine = {k: v for k, v in params.items() if k in cls.keys()}
        return cls(**mine), {k: v for k, v in params.items() if k not in mine}


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone as a trained model records it: its name (a variant "onnx@label" too), its
    settings and, for a backbone trained per fold, that fold's `model.pt`. A fused backbone
    "a+b" has its parts in order (and no settings of its own)."""

    name: str
    params: dict = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    parts: tuple[BackboneSpec, ...] = ()

    def leaves(self) -> tuple[BackboneSpec, ...]:
        """The backbones that run: the parts of a fused one, else itself."""
        return self.parts or (self,)

    def key(self) -> str:
        """What identifies a built backbone: the same key, the same network and outputs."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_dict(self) -> dict:
        if self.parts:
            return {"name": self.name, "parts": [p.to_dict() for p in self.parts]}
        out = {"name": self.name, "params": self.params}
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        return out

    @classmethod
    def from_dict(cls, d: dict) -> BackboneSpec:
        if d.get("parts"):
            return cls(d["name"], parts=tuple(cls.from_dict(p) for p in d["parts"]))
        return cls(d["name"], dict(d.get("params") or {}), d.get("checkpoint"))

    def without_checkpoints(self) -> BackboneSpec:
        """The same backbone whatever the fold (per-fold checkpoints differ by fold)."""
        if self.parts:
            return dataclasses.replace(
                self, parts=tuple(p.without_checkpoints() for p in self.parts)
            )
        return dataclasses.replace(self, checkpoint=None)


@dataclass(frozen=True)
class Preprocessing:
    """Everything before a temporal model, the contract between training and prediction:
    built once from the config (`from_config`), written into every trained `model.pt`, read
    back by `pipeline.predict` and the live stream (`from_dict`), so that a new video goes
    through the same decoding, face stage, alignment, clip windows, backbone and person
    calibration as the training videos did.

    Sections: `decode` (folder_fps, target_fps), `face`, `frontalize` and `clips` (the
    config's sections as the run had them), `backbone`, and `normalize` (none, per_subject
    or calibrated: `store.Calibration`)."""

    decode: dict
    face: dict
    frontalize: dict
    clips: dict
    backbone: BackboneSpec
    normalize: str = "none"

    @classmethod
    def from_config(
        cls, config: dict, backbone: str, normalize: str, fold: int | str | None = None
    ) -> Preprocessing:
        """The preprocessing of `backbone` (a fused name too) in a run of `config`; a per-fold
        backbone's checkpoint is fold `fold`'s."""

        def spec(name: str) -> BackboneSpec:
            checkpoint = None
            if catalog.backbone_entry(name).per_fold:
                checkpoint = f"results/backbones/{name}/fold{fold}/model.pt"
            return BackboneSpec(name, dict(config["backbones"][name] or {}), checkpoint)

        names = catalog.parts(backbone)
        if len(names) == 1:
            chosen = spec(names[0])
        else:
            chosen = BackboneSpec(backbone, parts=tuple(spec(n) for n in names))
        dataset = config["dataset"]
        return cls(
            decode={k: dataset[k] for k in ("folder_fps", "target_fps")},
            face=dict(config["face"]),
            frontalize=dict(config["frontalize"]),
            clips=dict(config["clips"]),
            backbone=chosen,
            normalize=normalize,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """A model.pt's record (models trained before `frontalize.points` existed aligned on
        MTCNN's five points)."""
        frontalize = {"points": "mtcnn", **d["frontalize"]}
        return cls(
            decode=dict(d.get("decode") or {}),
            face=dict(d["face"]),
            frontalize=frontalize,
            clips=dict(d.get("clips") or {}),
            backbone=BackboneSpec.from_dict(d["backbone"]),
            normalize=d.get("normalize", "none"),
        )

    def to_dict(self) -> dict:
        return {
            "decode": self.decode,
            "face": self.face,
            "frontalize": self.frontalize,
            "clips": self.clips,
            "backbone": self.backbone.to_dict(),
            "normalize": self.normalize,
        }

    def json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def same_model_as(self, other: Preprocessing) -> bool:
        """Two folds of one model: the same preprocessing but for per-fold checkpoints."""
        mine = dataclasses.replace(self, backbone=self.backbone.without_checkpoints())
        theirs = dataclasses.replace(other, backbone=other.backbone.without_checkpoints())
        return mine.to_dict() == theirs.to_dict()
