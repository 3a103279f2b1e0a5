"""Statistics pooling: the baseline with more than the mean.

Each clip of per-frame feature vectors is summarised by statistics of every feature over time,
`stats` among mean, standard deviation, minimum, maximum and slope (least-squares, per clip
length), so the classifier sees how much and in which direction the face moved, not only its
average.
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
    """Statistics of every feature over the clip → standardise → logistic regression.

    Args:
        stats: which statistics, in this order of STATS (default all five).
        C: inverse L2 regularisation strength (scikit-learn's C, default 0.1: several times the
            features of meanpool from as many clips).
        max_iter: L-BFGS iterations (default 1000).
    """

    takes = VECTORS

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        stats: tuple[str, ...] | list[str] = STATS,
        C: float = 0.1,
        max_iter: int = 1000,
    ):
        unknown = [s for s in stats if s not in STATS]
        if unknown or not stats or len(set(stats)) != len(stats):
            raise ValueError(f"stats must be distinct names among {', '.join(STATS)}; got {stats}")
        self.stats = tuple(s for s in STATS if s in stats)
        self.pooled_width = len(self.stats)
        super().__init__(
            n_classes=n_classes, input_shape=input_shape, task=task, C=C, max_iter=max_iter
        )

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, S·D): the chosen statistics of every feature over time."""
        x = x.float()
        mean = x.mean(1)
        centred = x - mean[:, None]
        parts = []
        for name in self.stats:
            if name == "mean":
                parts.append(mean)
            elif name == "std":
                parts.append(centred.pow(2).mean(1).sqrt())
            elif name == "min":
                parts.append(x.amin(1))
            elif name == "max":
                parts.append(x.amax(1))
            else:  # slope of the least-squares line over t in [-1, 1]
                t = torch.linspace(-1.0, 1.0, x.shape[1], device=x.device)[None, :, None]
                parts.append((t * centred).sum(1) / (t * t).sum(1).clamp_min(1e-6))
        return torch.cat(parts, 1)
