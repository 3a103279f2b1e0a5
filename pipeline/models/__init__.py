"""Temporal models: one module each, registered by name in `pipeline.catalog.MODELS`.

A model is a `TemporalModel` (`pipeline.models.base`) with a typed keyword-only constructor
`(*, n_classes, input_shape, task, <its own settings>)`. `split_params` divides a
`models.<name>` config section into the training settings (`settings.Training`, applied by
the engine), the DAG's keys (`backbones`, `normalize`) and the constructor's settings;
`build_model` builds an untrained model from them and `load_checkpoint` rebuilds a trained
one from its `model.pt`. Nothing here trains: models never import the engine.
"""

from __future__ import annotations

import torch

from pipeline import catalog
from pipeline.common import ConfigError, check_keys, keyword_names
from pipeline.models.base import TemporalModel, Trainable
from pipeline.settings import Training

__all__ = ["TemporalModel", "Trainable", "build_model", "load_checkpoint", "split_params"]

DAG_KEYS = ("backbones", "normalize")  # read by the DAG (pairing, calibration), not the model


def model_settings(name: str) -> tuple[str, ...]:
    """The settings of model `name`'s constructor (its architecture keys)."""
    cls = catalog.load(catalog.MODELS, name, "model")
    return keyword_names(cls, skip=("self", "n_classes", "input_shape", "task"))


def split_params(name: str, params: dict) -> tuple[Training, dict]:
    """A `models.<name>` section → (training settings, constructor settings).

    An unknown key is a ConfigError naming it and the valid keys.
    """
    arch = model_settings(name)
    check_keys(f"models.{name}", params, (*Training.keys(), *DAG_KEYS, *arch))
    training, rest = Training.take(params)
    return training, {k: v for k, v in rest.items() if k in arch}


def build_model(
    name: str,
    n_classes: int,
    input_shape: tuple[int, ...],
    params: dict,
    task: str = "classify",
) -> TemporalModel:
    """A new, untrained model `name` for inputs of `input_shape` (T, ...) and n_classes
    outputs (classes; the dimensions in a regress run), built for `task`."""
    cls = catalog.load(catalog.MODELS, name, "model")
    catalog.check_task(name, task)
    _, arch = split_params(name, params)
    try:
        return cls(n_classes=n_classes, input_shape=tuple(input_shape), task=task, **arch)
    except ValueError as err:
        raise ConfigError(f"models.{name}: {err}") from None


def load_checkpoint(path, device: str = "cpu") -> tuple[TemporalModel, dict]:
    """Rebuild a trained model from its `model.pt` (tensors and plain metadata only)."""
    saved = torch.load(path, map_location=device, weights_only=True)
    meta = saved["meta"]
    model = build_model(
        meta["model"],
        len(meta["classes"]),
        tuple(meta["input_shape"]),
        meta["params"],
        meta.get("task", "classify"),
    )
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), meta
