"""Temporal models: one module each, registered by name in `pipeline.catalog.MODELS`.

A model is a `TemporalModel` (an engine `Trainable`) with a typed keyword-only constructor
`(*, n_classes, input_shape, <its own settings>)`. `build_model` turns a `models.<name>`
config section into a model: the training keys (`engine.Training`) and `backbones` are
the engine's and the DAG's; every other key must be one of the constructor's settings.
`load_checkpoint` rebuilds a trained model from its `model.pt`.
"""

from __future__ import annotations

import torch

from pipeline import catalog
from pipeline.common import ConfigError, check_keys, keyword_names
from pipeline.engine import Trainable, Training

DAG_KEYS = ("backbones", "normalize")  # read by the DAG (pairing, calibration), not the model


class TemporalModel(Trainable):
    """A classifier over clips: (B, T, D) vectors or (B, T, H, W, C) uint8 pixels → (B, K) logits.

    Vector inputs are standardised with per-feature statistics fitted on the training fold
    (never the test fold), kept as buffers `in_mean`/`in_std` so that a saved checkpoint
    normalises new data the same way. Pixel clips are standardised each by its own mean and
    std, which removes skin tone, lighting and camera gain (identity cues) before the network.

    Class attributes a model may override:
        takes: the input kind (catalog.VECTORS, PIXELS or ANY).
        variable_length: True when any clip length T works unpadded (recurrent, convolutional
            over time, attention); the on-the-fly evaluation then feeds a video's first frames
            as they are instead of padding them to the clip length.
        closed_form: True when the model is fitted by `fit_closed_form(x, y, sample_weight)`
            instead of gradient steps (meanpool), or `fit_regression(x, y, x_val, y_val)` in a
            regress run (ridge).

    Models that regress (`task: regress`, `pipeline.regression`) give an output per frame:
    `per_frame(x)` (B, T, K), one per dimension, and may add their own terms to the loss in
    `regression_objective`. `regression` is True when the model was built for a regress run
    (`build_model(..., task="regress")`).
    """

    takes: str
    variable_length = False
    regression = False

    def __init__(self, *, n_classes: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.n_classes = n_classes
        self.input_shape = tuple(input_shape)
        stat_shape = (input_shape[-1],) if self.takes == catalog.VECTORS else (0,)
        self.register_buffer("in_mean", torch.zeros(stat_shape))
        self.register_buffer("in_std", torch.ones(stat_shape))

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Set input mean/std from training clips x: per feature for vectors, global for pixels."""
        if self.takes == catalog.VECTORS:
            flat = x.float().reshape(-1, x.shape[-1])
            self.in_mean.copy_(flat.mean(0))
            self.in_std.copy_(flat.std(0).clamp_min(1e-4))

    def per_frame(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) → (B, T, K) frame-wise outputs (models that regress override this)."""
        raise ConfigError(f"model {type(self).__name__} gives no frame-wise output to regress")

    def regression_objective(self, x: torch.Tensor, y: torch.Tensor, loss) -> torch.Tensor:
        """The training loss of a batch in a regress run: `loss(per_frame(x), y)` (y (B, T, K),
        NaN where unlabelled)."""
        return loss(self.per_frame(x), y)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.dim() == 3:  # vectors
            return (x - self.in_mean) / self.in_std
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-3)


def model_settings(name: str) -> tuple[str, ...]:
    """The settings of model `name`'s constructor (its architecture keys)."""
    cls = catalog.load(catalog.MODELS, name, "model")
    return keyword_names(cls, skip=("self", "n_classes", "input_shape"))


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
    outputs (classes; the dimensions in a regress run)."""
    cls = catalog.load(catalog.MODELS, name, "model")
    catalog.check_task(name, task)
    _, arch = split_params(name, params)
    try:
        model = cls(n_classes=n_classes, input_shape=tuple(input_shape), **arch)
    except ValueError as err:
        raise ConfigError(f"models.{name}: {err}") from None
    model.regression = task == "regress"
    return model


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
