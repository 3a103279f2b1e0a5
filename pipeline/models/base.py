"""What every trained network is: `Trainable` (the engine's side of a model, also subclassed by
the per-fold backbones) and `TemporalModel` (a classifier or regressor over clips).

A model knows its task from construction (`task="classify"` or `"regress"`) and has one
forward: (B, K) logits of the clip when it classifies, (B, T, K) outputs of every frame when it
regresses. Training is the engine's (`pipeline.engine`): nothing here imports it.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline import catalog
from pipeline.common import ConfigError


class Trainable(nn.Module):
    """What the engine trains: forward(x) → outputs the task's loss compares with y.

    Subclasses may override:
        closed_form: True when `fit_closed_form` fits the model in one call instead of
            gradient steps (meanpool, ridge).
        selects: True when a closed-form model chooses a setting on the held-out training
            subjects (ridge's penalty), so the engine holds them out for it.
        fit_normalization(x): set input statistics from the training tensors before fitting.
        objective(x, y, loss): the training loss and the outputs of a batch (for models with
            extra losses); by default `loss(self(x), y)`.
    """

    closed_form = False
    selects = False
    n_classes: int
    task: str = "classify"

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Nothing to fit by default."""

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, loss
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, outputs) of a batch; `loss(outputs, y)` is the task's criterion."""
        out = self(x)
        return loss(out, y), out

    def fit_closed_form(self, x, y, sample_weight=None, x_val=None, y_val=None) -> dict:
        """Fit in one call; returns the history row's values (loss, …)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient steps")


class TemporalModel(Trainable):
    """A model over clips: (B, T, D) vectors or (B, T, H, W, C) uint8 pixels → (B, K) logits of
    the clip (task classify) or (B, T, K) values of every frame (task regress).

    Vector inputs are standardised with per-feature statistics fitted on the training fold
    (never the test fold), kept as buffers `in_mean`/`in_std` so that a saved checkpoint
    normalises new data the same way. Pixel clips are standardised each by its own mean and
    std, which removes skin tone, lighting and camera gain (identity cues) before the network.

    Class attributes a model may override:
        takes: the input kind (catalog.VECTORS, PIXELS or ANY).
        variable_length: True when any clip length T works unpadded (recurrent, convolutional
            over time, attention); the on-the-fly evaluation then feeds a video's first frames
            as they are instead of padding them to the clip length.
    """

    takes: str
    variable_length = False

    def __init__(self, *, n_classes: int, input_shape: tuple[int, ...], task: str = "classify"):
        super().__init__()
        if task not in catalog.TASKS:
            raise ConfigError(f"unknown task {task!r}; known: {', '.join(catalog.TASKS)}")
        self.n_classes = n_classes
        self.input_shape = tuple(input_shape)
        self.task = task
        stat_shape = (input_shape[-1],) if self.takes == catalog.VECTORS else (0,)
        self.register_buffer("in_mean", torch.zeros(stat_shape))
        self.register_buffer("in_std", torch.ones(stat_shape))

    @property
    def regresses(self) -> bool:
        return self.task == "regress"

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Set input mean/std from training clips x: per feature for vectors, global for pixels."""
        if self.takes == catalog.VECTORS:
            flat = x.float().reshape(-1, x.shape[-1])
            self.in_mean.copy_(flat.mean(0))
            self.in_std.copy_(flat.std(0).clamp_min(1e-4))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.dim() == 3:  # vectors
            return (x - self.in_mean) / self.in_std
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-3)
