"""Typed settings that several stages share, parsed once from the config.

`Training` is what every trained thing (temporal model, per-fold backbone) is trained with;
the engine (`pipeline.engine`) applies it. Its defaults are the schema's
(`definitions.training`; a test checks that they agree).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
