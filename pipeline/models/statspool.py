"""Statistics pooling: the baseline with more than the mean.

Each clip of per-frame feature vectors is summarised by five statistics of every feature over
time: mean, standard deviation, minimum, maximum and slope (least-squares, per clip length), so
the classifier sees how much and in which direction the face moved, not only its average.
The summary is standardised with statistics of the training fold and classified by a
multinomial logistic regression (scikit-learn, L2 penalty `C`), as `meanpool` does; the fitted
coefficients live in a linear layer, so it is saved, loaded and applied like every other model.
"""

from __future__ import annotations

import torch

from pipeline.catalog import VECTORS
from pipeline.models.meanpool import MeanPool

STATS = ("mean", "std", "min", "max", "slope")


class StatsPool(MeanPool):
    """Mean, std, min, max and slope over the clip → standardise → logistic regression.

    Args:
        C: inverse L2 regularisation strength (scikit-learn's C, default 0.1: five times the
            features of meanpool from as many clips).
        max_iter: L-BFGS iterations (default 1000).
    """

    takes = VECTORS
    pooled_width = len(STATS)

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        C: float = 0.1,
        max_iter: int = 1000,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, C=C, max_iter=max_iter)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, 5·D): mean, std, min, max, slope of every feature over time."""
        x = x.float()
        t = torch.linspace(-1.0, 1.0, x.shape[1], device=x.device)[None, :, None]
        mean = x.mean(1)
        centred = x - mean[:, None]
        slope = (t * centred).sum(1) / (t * t).sum(1).clamp_min(1e-6)
        std = centred.pow(2).mean(1).sqrt()
        return torch.cat([mean, std, x.amin(1), x.amax(1), slope], 1)
