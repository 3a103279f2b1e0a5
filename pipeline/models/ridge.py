"""The regression baseline (task: regress): ridge regression on a clip's mean features.

Every clip is summarised by the mean of its standardised frame features; a linear map
(scikit-learn's Ridge, closed form) gives one value per dimension for the whole clip,
fitted to the mean of the clip's labelled frames. The penalty is chosen among `alphas` on
the held-out training subjects (frame-wise loss against their labels), then the map is
fitted again on every training subject. As windows overlap, a frame's prediction is the
mean of the clips covering it: a piecewise-smooth curve that shows what a model gains by
modelling time within the clip.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.catalog import VECTORS
from pipeline.models.base import TemporalModel


class RidgeBaseline(TemporalModel):
    """Mean over the clip → linear (ridge) → the same value for every frame of the clip.

    Args:
        alphas: penalties tried (default 0.1, 1, 10, 100, 1000).
    """

    takes = VECTORS
    variable_length = True
    closed_form = True
    selects = True  # the penalty, on the held-out training subjects

    def __init__(
        self,
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        task: str = "classify",
        alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0),
    ):
        super().__init__(n_classes=n_classes, input_shape=input_shape, task=task)
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"ridge: alphas must be positive, got {alphas!r}")
        self.alphas = tuple(float(a) for a in alphas)
        self.linear = nn.Linear(input_shape[-1], n_classes)
        self.register_buffer("alpha", torch.zeros(()))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, K): the clip's one value per dimension, on each of its frames."""
        return self.linear(self.pooled(x))[:, None, :].expand(-1, x.shape[1], -1)

    def _clip_targets(self, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features and mean labelled target of the clips labelled in every dimension."""
        with torch.no_grad():
            features = self.pooled(x).double().numpy()
        y = y.double().numpy()
        seen = np.isfinite(y).any(1).all(1)
        with np.errstate(invalid="ignore"):
            target = np.nanmean(np.where(np.isfinite(y), y, np.nan)[seen], axis=1)
        return features[seen], target

    def _set(self, model) -> None:
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(np.atleast_2d(model.coef_)))
            self.linear.bias.copy_(torch.as_tensor(np.atleast_1d(model.intercept_)))

    def fit_closed_form(self, x, y, sample_weight=None, x_val=None, y_val=None) -> dict:
        """Choose the penalty on (x_val, y_val) by frame-wise MSE, refit on x ∪ x_val."""
        from sklearn.linear_model import Ridge

        features, target = self._clip_targets(x, y)
        if len(features) == 0:
            raise ValueError("ridge: no training clip has a labelled frame in every dimension")
        best, best_loss = self.alphas[0], None
        if x_val is not None and len(x_val):
            known = torch.isfinite(y_val)
            for alpha in self.alphas:
                self._set(Ridge(alpha=alpha).fit(features, target))
                with torch.no_grad():
                    pred = self(x_val)
                loss = float(((pred - torch.nan_to_num(y_val)) ** 2)[known].mean())
                if best_loss is None or loss < best_loss:
                    best, best_loss = alpha, loss
            more, more_target = self._clip_targets(x_val, y_val)
            features = np.concatenate([features, more])
            target = np.concatenate([target, more_target])
        fitted = Ridge(alpha=best).fit(features, target)
        self._set(fitted)
        self.alpha.fill_(best)
        residual = fitted.predict(features) - target
        row = {"loss": float(np.mean(residual**2)), "alpha": best}
        if best_loss is not None:
            row["val_loss"] = best_loss
        return row
