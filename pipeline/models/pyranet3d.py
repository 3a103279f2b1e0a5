"""3DPyraNet / EmoP3D: 3D pyramidal neurons over pixel clips.

A pyramidal (weighted-sum) layer is not a convolution: every *position* of the input map has
its own weight, and an output neuron sums the weighted inputs of its receptive field plus a
bias of its own position:

    y[o, t, i, j] = Σ_c Σ_{(t', i', j') ∈ RF(t, i, j)} W[o, c, t', i', j'] · x[c, t', i', j'] + b[o, t, i, j]

(an `rf`³ window moved with `stride`). As in 3DPyraNet the layers shrink the maps into a
pyramid: weighted sum → max pooling → leaky ReLU, twice, then a linear classifier. The
number of weights grows with the input size, so the model is built for one clip size:
clips of another length are resampled in time to `frames` (linear interpolation), and the
spatial size is the backbone's (EmoP3D: 16 × 100 × 100 grey, 3 feature maps).

Defaults follow EmoP3D where the training loop allows: SGD with momentum 0.9, lr 1.5e-4
divided by 10 every 15 epochs, batch 100, 50 epochs (see the config schema).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.catalog import PIXELS
from pipeline.models.base import TemporalModel


def out_size(n: int, rf: int, stride: int) -> int:
    return (n - rf) // stride + 1


class Pyramidal3d(nn.Module):
    """A 3D weighted-sum layer with one weight per input position and map pair.

    Args:
        in_maps, out_maps: feature maps in and out.
        in_shape: (T, H, W) of the input maps.
        rf: receptive field side (rf × rf × rf).
        stride: step between receptive fields (default 1: windows overlap by rf - 1).
    """

    def __init__(self, in_maps: int, out_maps: int, in_shape, rf: int = 3, stride: int = 1):
        super().__init__()
        self.rf, self.stride = rf, stride
        self.out_shape = tuple(out_size(n, rf, stride) for n in in_shape)
        if min(self.out_shape) < 1:
            raise ValueError(f"pyramidal layer: input {tuple(in_shape)} smaller than rf {rf}")
        fan_in = in_maps * rf**3
        self.weight = nn.Parameter(torch.randn(out_maps, in_maps, *in_shape) / fan_in**0.5)
        self.bias = nn.Parameter(torch.zeros(out_maps, *self.out_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_maps, T, H, W) → (B, out_maps, T', H', W')."""
        weighted = torch.einsum("bcthw,octhw->bothw", x, self.weight)
        summed = F.avg_pool3d(weighted, self.rf, self.stride) * self.rf**3
        return summed + self.bias


class PyraNet3D(TemporalModel):
    """Two pyramidal layers (each: weighted sum → 2×2×2 max pooling → leaky ReLU) → linear.

    Args:
        maps: feature maps per layer (default 3, EmoP3D's strict model).
        rf: receptive field side of the weighted-sum layers (default 3).
        frames: clip length the weights are laid out for (default 16).
        slope: leaky ReLU slope (default 0.01).
        dropout: before the classifier (default 0.3).
    """

    takes = PIXELS

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        maps: int = 3,
        rf: int = 3,
        frames: int = 16,
        slope: float = 0.01,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        _, h, w, c = input_shape
        self.frames, self.slope = frames, slope
        shape = (frames, h, w)
        layers = []
        for c_in in (c, maps):
            layer = Pyramidal3d(c_in, maps, shape, rf)
            layers.append(layer)
            shape = tuple(max(1, -(-n // 2)) for n in layer.out_shape)  # ceil-mode pooling
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(maps * shape[0] * shape[1] * shape[2], n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) uint8 clips → (B, K) logits."""
        x = self.normalize(x).permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) → (B, C, T, H, W)
        if x.shape[2] != self.frames:  # resample time to the length the weights expect
            x = F.interpolate(x, size=(self.frames, *x.shape[3:]), mode="trilinear")
        for layer in self.layers:
            x = F.leaky_relu(F.max_pool3d(layer(x), 2, ceil_mode=True), self.slope)
        return self.head(x)
