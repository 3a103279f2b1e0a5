"""The baseline every deep model is compared against: logistic regression on averaged features.

Each clip is reduced to the mean of its frames (pixel clips: standardised per clip first, as
the pixel models do, then flattened), standardised with statistics of the training fold, and
classified by a multinomial logistic regression fitted by scikit-learn (L-BFGS, L2 penalty
`C`). The fitted coefficients are copied into a linear layer, so the baseline is saved, loaded
and applied like every other model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.catalog import ANY
from pipeline.models.base import TemporalModel

ABSENT = -1e4  # logit of a class the training fold lacks (never predicted)


class MeanPool(TemporalModel):
    """Time average → standardise → multinomial logistic regression.

    Args:
        C: inverse L2 regularisation strength (scikit-learn's C, default 1.0).
        max_iter: L-BFGS iterations (default 1000).
    """

    takes = ANY
    variable_length = True
    closed_form = True
    pooled_width = 1  # summaries per input feature (StatsPool: 5)

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        C: float = 1.0,
        max_iter: int = 1000,
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        self.C, self.max_iter = float(C), int(max_iter)
        dim = math.prod(input_shape[1:]) * self.pooled_width
        self.register_buffer("pool_mean", torch.zeros(dim))
        self.register_buffer("pool_std", torch.ones(dim))
        self.linear = nn.Linear(dim, n_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) → (B, D): the mean frame, flattened."""
        if x.dim() == 5:
            x = self.normalize(x)
        return x.float().mean(1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) clips → (B, K) logits."""
        return self.linear((self.pooled(x) - self.pool_mean) / self.pool_std)

    def fit_closed_form(self, x, y, sample_weight=None, x_val=None, y_val=None) -> dict:
        """Fit on training clips x (N, T, ...) and labels y (N,) with per-sample weights; returns
        the training loss and accuracy. Nothing is chosen on validation clips."""
        from sklearn.linear_model import LogisticRegression

        with torch.no_grad():  # on the CPU whatever the device: scikit-learn fits there
            z = torch.cat([self.pooled(x[i : i + 256].cpu()) for i in range(0, len(x), 256)])
        mean, std = z.mean(0), z.std(0).clamp_min(1e-4)
        self.pool_mean.copy_(mean)
        self.pool_std.copy_(std)
        z = ((z - mean) / std).double().numpy()
        labels = y.numpy()
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
        clf.fit(z, labels, sample_weight=sample_weight)
        coef = np.zeros((self.n_classes, z.shape[1]))
        bias = np.full(self.n_classes, ABSENT)
        present = clf.classes_.astype(int)
        if len(present) == 2:  # sklearn keeps one row: p(second class) = sigmoid(w·z + b)
            coef[present[1]], bias[present[0]], bias[present[1]] = (
                clf.coef_[0],
                0.0,
                clf.intercept_[0],
            )
        else:
            coef[present], bias[present] = clf.coef_, clf.intercept_
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(coef))
            self.linear.bias.copy_(torch.from_numpy(bias))
        proba = clf.predict_proba(z)
        rows = np.arange(len(labels))
        column = np.searchsorted(present, labels)
        return {
            "loss": float(-np.log(np.clip(proba[rows, column], 1e-12, None)).mean()),
            "train_acc": float((present[proba.argmax(1)] == labels).mean()),
        }
