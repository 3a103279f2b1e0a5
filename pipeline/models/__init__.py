"""Temporal models: each module defines `Model(TemporalModel)`; names live in pipeline.catalog."""

from __future__ import annotations

import torch
from torch import nn


class TemporalModel(nn.Module):
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
            instead of gradient steps (meanpool).
    """

    takes: str
    variable_length = False
    closed_form = False

    def __init__(self, *, n_classes: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.n_classes = n_classes
        self.input_shape = tuple(input_shape)
        stat_shape = (input_shape[-1],) if self.takes == "vectors" else (0,)
        self.register_buffer("in_mean", torch.zeros(stat_shape))
        self.register_buffer("in_std", torch.ones(stat_shape))

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Set input mean/std from training clips x: per feature for vectors, global for pixels."""
        if self.takes == "vectors":
            flat = x.float().reshape(-1, x.shape[-1])
            self.in_mean.copy_(flat.mean(0))
            self.in_std.copy_(flat.std(0).clamp_min(1e-4))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.dim() == 3:  # vectors
            return (x - self.in_mean) / self.in_std
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-3)

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, criterion
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, sequence logits) of a batch; models with extra objectives override it.

        `criterion` is the class-weighted cross-entropy of the training fold.
        """
        logits = self(x)
        return criterion(logits, y), logits


def load_checkpoint(path, device: str = "cpu") -> tuple[TemporalModel, dict]:
    """Rebuild a trained model from its `model.pt` (tensors and plain metadata only)."""
    from pipeline.train import build_model

    saved = torch.load(path, map_location=device, weights_only=True)
    meta = saved["meta"]
    model = build_model(
        meta["model"], len(meta["classes"]), tuple(meta["input_shape"]), meta["params"]
    )
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), meta
