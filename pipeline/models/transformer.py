"""A transformer encoder over per-frame feature vectors."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.catalog import VECTORS
from pipeline.models.base import TemporalModel


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sinusoidal position codes (Vaswani et al. 2017): any length works."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class TemporalTransformer(TemporalModel):
    """Linear projection + sinusoidal positions → pre-norm encoder layers → mean over time → linear.

    Args:
        d_model: width of the encoder (default 64).
        heads: attention heads (default 4; must divide d_model).
        layers: encoder layers (default 2).
        ff: width of the feed-forward sublayer (default 128).
        dropout: inside the encoder and before the classifier (default 0.3).
    """

    takes = VECTORS
    variable_length = True

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        ff: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        if d_model % heads:
            raise ValueError(f"transformer: d_model {d_model} is not divisible by heads {heads}")
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(input_shape[-1], d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, n_classes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features → (B, T, d) encoded frames."""
        h = self.proj(self.normalize(x))  # (B, T, d)
        h = h + sinusoid(h.shape[1], h.shape[2]).to(h.device)
        return self.norm(self.encoder(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features → (B, K) logits of the mean encoded frame; regressing, (B, T, K):
        the head on every encoded frame (sequence to sequence)."""
        encoded = self.encode(x)
        return self.head(encoded) if self.regresses else self.head(encoded.mean(1))
