"""A small C3D-style 3D-CNN over pixel clips (3×3×3 convolutions, spatio-temporal pooling)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.catalog import PIXELS
from pipeline.models.base import TemporalModel


def block(c_in: int, c_out: int, pool: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(pool, ceil_mode=True),
    )


class C3D(TemporalModel):
    """Conv3d blocks (first pools space only, as in C3D) → pool to (1, grid, grid) → linear.

    Pooling time away but keeping a coarse spatial grid (C3D flattens into its fully connected
    layers) lets the classifier know *where* on the aligned face a movement happened.

    Args:
        width: channels of the first block, doubled at each block (default 16).
        blocks: number of conv blocks (default 3).
        grid: side of the spatial grid kept before the classifier (default 4).
        dropout: before the classifier (default 0.3).
    """

    takes = PIXELS

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        width: int = 16,
        blocks: int = 3,
        grid: int = 4,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        channels = input_shape[-1]
        layers, c = [], channels
        for i in range(blocks):
            layers.append(block(c, width * 2**i, (1, 2, 2) if i == 0 else (2, 2, 2)))
            c = width * 2**i
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d((1, grid, grid))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * grid * grid, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) uint8 clips → (B, K) logits."""
        x = self.normalize(x).permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) → (B, C, T, H, W)
        x = self.pool(self.features(x))  # (B, C', 1, grid, grid)
        return self.head(x)  # (B, K)
