"""GRU over per-frame feature vectors: a recurrent baseline for vector backbones."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.catalog import VECTORS
from pipeline.models.base import TemporalModel


class GRUClassifier(TemporalModel):
    """Linear projection → GRU → last hidden state → linear classifier.

    Args:
        hidden: GRU width (default 64).
        layers: stacked GRU layers (default 1).
        proj: projection width applied to each frame's features first (default 128).
        dropout: dropout on the projected frames and the final state (default 0.3).
    """

    takes = VECTORS

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        hidden: int = 64,
        layers: int = 1,
        proj: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        dim = input_shape[-1]
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, proj), nn.ReLU())
        self.gru = nn.GRU(proj, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features → (B, K) logits of the last step; regressing, (B, T, K): the head
        on every step (causal, sequence to sequence)."""
        h = self.proj(self.normalize(x))  # (B, T, P)
        out, _ = self.gru(h)  # (B, T, H)
        return self.head(out) if self.regresses else self.head(out[:, -1])
