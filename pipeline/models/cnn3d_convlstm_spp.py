"""3D-CNN + ConvLSTM + weighted spatial pyramid pooling (Al Chanti & Caplier, IEEE TAFFC 2018).

The three parts of "Deep learning for spatio-temporal modeling of dynamic spontaneous
emotions", as this module reads them:

1. a 3D-CNN extracts short-term spatio-temporal features (3×3×3 convolutions; the first
   block pools space only, later ones space and time, as in C3D);
2. a convolutional LSTM runs over the remaining time steps and keeps the spatial layout in
   its state, modelling the long-term dependencies the short 3D kernels miss;
3. the last ConvLSTM state is max-pooled on pyramids of 1×1, 2×2, 4×4, … bins; each level is
   multiplied by a learned positive weight (softplus, initialised to 1) before the levels are
   concatenated, so training decides how much the coarse and the fine resolutions count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.catalog import PIXELS
from pipeline.models.base import TemporalModel
from pipeline.models.c3d import block


class ConvLSTMCell(nn.Module):
    """LSTM gates computed by a 2D convolution over [input, hidden] (Shi et al. 2015)."""

    def __init__(self, c_in: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(c_in + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: input (B, C_in, H, W), state (h, c) each (B, hidden, H, W) → new (h, c)."""
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class WeightedSPP(nn.Module):
    """Max pooling on `levels` grids (l×l bins each), each level scaled by a learned weight."""

    def __init__(self, levels=(1, 2, 4)):
        super().__init__()
        self.levels = tuple(levels)
        # softplus(0.5413) = 1.0: every level starts with weight 1
        self.raw = nn.Parameter(torch.full((len(self.levels),), 0.5413))

    def weights(self) -> torch.Tensor:
        return F.softplus(self.raw)

    def out_dim(self, channels: int) -> int:
        return channels * sum(level * level for level in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C × Σ l²)."""
        w = self.weights()
        return torch.cat(
            [
                w[k] * F.adaptive_max_pool2d(x, level).flatten(1)
                for k, level in enumerate(self.levels)
            ],
            dim=1,
        )


class CNN3DConvLSTMSPP(TemporalModel):
    """3D conv blocks → ConvLSTM over time → weighted SPP of the last state → linear.

    Args:
        width: channels of the first 3D block, doubled per block (default 8).
        blocks: 3D conv blocks (default 2).
        hidden: ConvLSTM channels (default 32).
        levels: pyramid levels (default [1, 2, 4]).
        dropout: before the classifier (default 0.3).
    """

    takes = PIXELS
    variable_length = True

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        width: int = 8,
        blocks: int = 2,
        hidden: int = 32,
        levels: Sequence[int] = (1, 2, 4),
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        layers, c = [], input_shape[-1]
        for i in range(blocks):
            layers.append(block(c, width * 2**i, (1, 2, 2) if i == 0 else (2, 2, 2)))
            c = width * 2**i
        self.cnn = nn.Sequential(*layers)
        self.cell = ConvLSTMCell(c, hidden)
        self.spp = WeightedSPP(levels)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.spp.out_dim(hidden), n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) uint8 clips → (B, K) logits."""
        x = self.normalize(x).permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) → (B, C, T, H, W)
        f = self.cnn(x)  # (B, C', T', H', W')
        b, _, steps, hgt, wid = f.shape
        h = f.new_zeros(b, self.cell.hidden, hgt, wid)
        c = torch.zeros_like(h)
        for t in range(steps):
            h, c = self.cell(f[:, :, t], (h, c))
        return self.head(self.spp(h))
