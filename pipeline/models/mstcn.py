"""MS-TCN: a multi-stage temporal convolutional network on per-frame features.

After Farha & Gall (CVPR 2019), the temporal model of the ResNet-with-channel-attention →
MS-TCN recipe among our seeds. Each stage is a stack of dilated residual layers (dilation
1, 2, 4, …, kernel 3, so `layers` layers see 2^(layers+1) − 1 frames) that outputs class
logits for every frame; every later stage refines the softmax of the stage before. Training
loss, summed over stages: frame-wise cross-entropy (each frame carries its video's label)
plus `smooth` × the truncated MSE between log-probabilities of consecutive frames
(differences clamped at `tau`, the previous frame detached), which discourages flicker.
The sequence label is the mean over frames of the last stage's logits.

In a regress run (`task: regress`) every frame's output is the value of each dimension, as
in the seed recipe's valence over time: a later stage refines the previous stage's values
(not their softmax), every stage's frame-wise loss counts, and the smoothing term is the
truncated squared difference of consecutive frames' values.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.catalog import VECTORS
from pipeline.models.base import TemporalModel


class DilatedResidual(nn.Module):
    def __init__(self, channels: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) → (B, C, T): dilated conv, ReLU, 1×1 conv, dropout, plus the input."""
        return x + self.drop(self.mix(F.relu(self.conv(x))))


class Stage(nn.Module):
    def __init__(self, c_in: int, channels: int, n_classes: int, layers: int, dropout: float):
        super().__init__()
        self.inp = nn.Conv1d(c_in, channels, 1)
        self.layers = nn.Sequential(
            *(DilatedResidual(channels, 2**i, dropout) for i in range(layers))
        )
        self.out = nn.Conv1d(channels, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) → (B, K, T) frame-wise logits."""
        return self.out(self.layers(self.inp(x)))


def truncated_mse(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over frames of min((Δ log p)², tau²) between consecutive frames (B, K, T)."""
    if logits.shape[2] < 2:
        return logits.new_zeros(())
    logp = F.log_softmax(logits, dim=1)
    diff = logp[:, :, 1:] - logp[:, :, :-1].detach()
    return torch.clamp(diff**2, max=tau**2).mean()


class MSTCN(TemporalModel):
    """Stages of dilated residual layers → frame-wise logits → mean over time.

    Args:
        stages: number of stages (default 2; the paper uses 4).
        layers: dilated residual layers per stage (default 5; the paper uses 10).
        channels: width of every layer (default 64, as the paper).
        smooth: weight of the truncated-MSE smoothing loss (default 0.15, as the paper).
        tau: truncation of the smoothing loss (default 4, as the paper).
        dropout: inside the residual layers and on the input (default 0.3).
    """

    takes = VECTORS
    variable_length = True

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        stages: int = 2,
        layers: int = 5,
        channels: int = 64,
        smooth: float = 0.15,
        tau: float = 4.0,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        self.smooth, self.tau = smooth, tau
        self.drop = nn.Dropout(dropout)
        self.stages = nn.ModuleList(
            [Stage(input_shape[-1], channels, n_classes, layers, dropout)]
            + [Stage(n_classes, channels, n_classes, layers, dropout) for _ in range(stages - 1)]
        )

    def frame_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's frame-wise logits (B, K, T)."""
        h = self.drop(self.normalize(x)).transpose(1, 2)  # (B, D, T)
        outputs = [self.stages[0](h)]
        for stage in self.stages[1:]:
            previous = outputs[-1] if self.regresses else F.softmax(outputs[-1], dim=1)
            outputs.append(stage(previous))
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features → (B, K): the last stage's frame logits averaged over time;
        regressing, (B, T, K): the last stage's frame-wise outputs."""
        last = self.frame_logits(x)[-1]
        return last.transpose(1, 2) if self.regresses else last.mean(2)

    def objective(self, x, y, loss):
        """Every stage's frame-wise loss plus `smooth` × the truncated squared difference of
        consecutive frames (classifying: of their log-probabilities; regressing: of their
        values, the previous frame detached)."""
        outputs = self.frame_logits(x)
        if self.regresses:
            total = 0.0
            for out in outputs:
                total = total + loss(out.transpose(1, 2), y)
                if out.shape[2] > 1:
                    diff = out[:, :, 1:] - out[:, :, :-1].detach()
                    total = total + self.smooth * torch.clamp(diff**2, max=self.tau**2).mean()
            return total, outputs[-1].transpose(1, 2)
        frames = y[:, None].expand(-1, outputs[0].shape[2])  # (B, T): the video label per frame
        total = sum(
            loss(out, frames) + self.smooth * truncated_mse(out, self.tau) for out in outputs
        )
        return total, outputs[-1].mean(2)
