"""CNN-LSTM with a partial-sequence objective for on-the-fly prediction (Baddar & Ro 2017).

arXiv 1711.10914: a CNN encodes each frame, an LSTM runs over the frames, and two objectives
train it: E1, cross-entropy of the expression class from the LSTM state at the end of the
sequence; E2, a Euclidean loss that makes the LSTM state at *every* frame regress the
expression intensity of that frame, so that partial sequences already carry the expression's
progress. The CNN here is the configured backbone (its per-frame features come from the
store), followed by a trained per-frame embedding.

Intensity target of frame t, after the paper: the cosine similarity of frame t's features
to the apex frame's (the clip's last frame: expression sequences run onset → apex),
min–max normalised over the sequence so that the least similar frame is 0 and the apex 1.
A window cut from inside a held apex has nearly equal frames, and min–max normalisation
would blow their noise up to the full [0, 1] range; the range used for normalising is
therefore at least `floor` (in cosine units): target = 1 − (1 − s_t) / max(1 − min s, floor).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.catalog import VECTORS
from pipeline.models.base import TemporalModel


def intensity_target(x: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """(B, T, D) normalised features → (B, T) intensity in [0, 1], 1 at the last frame."""
    sim = F.cosine_similarity(x, x[:, -1:].expand_as(x), dim=2)  # (B, T), 1 at the apex
    span = (1.0 - sim.min(1, keepdim=True).values).clamp_min(floor)
    return (1.0 - (1.0 - sim) / span).clamp(0.0, 1.0)


class CNNLSTMPartial(TemporalModel):
    """Per-frame embedding → LSTM → class logits (E1, last state) and intensity (E2, every state).

    Args:
        proj: width of the per-frame embedding (default 128).
        hidden: LSTM width (default 64).
        layers: stacked LSTM layers (default 1).
        intensity_weight: weight of E2 against E1 (default 1.0).
        floor: smallest similarity range the intensity target is normalised by (default 0.1).
        dropout: on the embedding and the LSTM states (default 0.3).
    """

    takes = VECTORS
    variable_length = True

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        proj: int = 128,
        hidden: int = 64,
        layers: int = 1,
        intensity_weight: float = 1.0,
        floor: float = 0.1,
        dropout: float = 0.3,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        self.intensity_weight, self.floor = intensity_weight, floor
        self.embed = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(input_shape[-1], proj), nn.ReLU(), nn.Dropout(dropout)
        )
        self.lstm = nn.LSTM(proj, hidden, num_layers=layers, batch_first=True)
        self.classify = nn.Linear(hidden, n_classes)
        self.intensity = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)

    def states(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised input (B, T, D), LSTM states (B, T, H))."""
        z = self.normalize(x)
        out, _ = self.lstm(self.embed(z))
        return z, self.drop(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features → (B, K) logits of the last step (E1)."""
        return self.classify(self.states(x)[1][:, -1])

    def frame_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """On the fly: class logits (B, T, K) and intensity (B, T) after every frame."""
        _, h = self.states(x)
        return self.classify(h), torch.sigmoid(self.intensity(h)).squeeze(2)

    def objective(self, x, y, criterion):
        z, h = self.states(x)
        logits = self.classify(h[:, -1])
        e1 = criterion(logits, y)
        predicted = torch.sigmoid(self.intensity(h)).squeeze(2)
        e2 = F.mse_loss(predicted, intensity_target(z.detach(), self.floor))
        return e1 + self.intensity_weight * e2, logits
