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
    """

    takes: str

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
        if self.takes == "vectors":
            return (x - self.in_mean) / self.in_std
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-3)
