"""What the engine optimises for each task: the loss, the validation score, and the targets'
standardisation. `pipeline.engine` trains any `Trainable` against one of these.

- `Classification`: class labels y (N,) against logits (B, K). Class-weighted cross-entropy
  (`balance: weighted`), or classes drawn equally often (`balance: sampler`); the history
  records accuracy.
- `Regression`: frame-wise targets y (N, T, D), NaN where a frame is unlabelled or pads a
  short clip, against outputs (B, T, D). The targets are standardised with the mean and std of
  the frames the model is fitted on (never the held-out or test subjects'); the loss is MSE or
  1 − CCC over the labelled frames (`regress.loss`), and the history records the validation CCC.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.common import DataError
from pipeline.continuous import ccc
from pipeline.settings import Training

LOSSES = ("mse", "ccc")


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over present classes); absent classes weigh 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(
        counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0
    )
    return weights.astype(np.float32)


def outputs(model: nn.Module, x: torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
    """The model's raw outputs for samples x, in batches, on the CPU as numpy."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(x[i : i + batch_size].to(device)).cpu())
    return torch.cat(out).numpy()


def evaluate_loss(model, x, y, criterion, device: str, batch_size: int = 64) -> tuple[float, float]:
    """Mean loss (the logits under the training criterion) and accuracy of samples x."""
    model.eval()
    total = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            logits = model(xb)
            total += criterion(logits, yb).item() * len(xb)
            correct += (logits.argmax(1) == yb).sum().item()
    return total / len(x), correct / len(x)


SHOWN = {  # the history's columns an epoch's log line shows, and their labels
    "loss": "loss",
    "train_acc": "train acc",
    "val_loss": "val loss",
    "val_acc": "val acc",
    "val_ccc": "val CCC",
}


def describe(row: dict) -> str:
    """An epoch's history row for the log: "loss 0.6931, train acc 0.500, val loss …"."""
    return ", ".join(
        f"{label} {row[key]:.{4 if 'loss' in key else 3}f}"
        for key, label in SHOWN.items()
        if key in row
    )


class Classification:
    """Class indices y (N,) → logits (B, K)."""

    task = "classify"

    def __init__(self, n_classes: int, settings: Training):
        self.n_classes, self.balance = n_classes, settings.balance

    def prepare(self, y: torch.Tensor, held: np.ndarray) -> torch.Tensor:
        """The targets the model is fitted on: the labels as they are."""
        return y

    def restore(self, out: np.ndarray) -> np.ndarray:
        return out

    def weights(self, y: torch.Tensor) -> np.ndarray:
        return class_weights(y.numpy(), self.n_classes)

    def sample_weight(self, y: torch.Tensor) -> np.ndarray:
        """Per-sample weights of a closed-form fit."""
        if self.balance == "none":
            return np.ones(len(y), np.float32)
        return self.weights(y)[y.numpy()]

    def draw(self, y: torch.Tensor) -> torch.Tensor | None:
        """Per-sample drawing weights (balance: sampler), or None for a shuffled pass."""
        if self.balance != "sampler":
            return None
        return torch.from_numpy(self.weights(y)[y.numpy()]).double()

    def criterion(self, y: torch.Tensor, device: str):
        weights = self.weights(y)
        if self.balance != "weighted":
            weights = np.ones_like(weights)
        return nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device))

    def hits(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return (out.argmax(1) == y).sum().item()

    def scores(self, loss: float, hits: float, n: int) -> dict:
        return {"loss": loss, "train_acc": hits / n}

    def validate(self, model, x_val, y_val, criterion, device: str) -> dict:
        loss, acc = evaluate_loss(model, x_val, y_val, criterion or nn.CrossEntropyLoss(), device)
        return {"val_loss": loss, "val_acc": acc}


def masked_loss(pred: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, T, D) predictions against targets with NaN gaps: MSE, or 1 − mean CCC per dimension
    over the labelled frames."""
    known = torch.isfinite(y)
    if not known.any():
        return pred.sum() * 0.0
    if kind == "mse":
        return ((pred - torch.nan_to_num(y)) ** 2)[known].mean()
    losses = []
    for d in range(y.shape[-1]):
        mask = known[..., d]
        if mask.sum() < 2:
            continue
        p, t = pred[..., d][mask], y[..., d][mask]
        mp, mt = p.mean(), t.mean()
        cov = ((p - mp) * (t - mt)).mean()
        denominator = p.var(unbiased=False) + t.var(unbiased=False) + (mp - mt) ** 2
        losses.append(1 - 2 * cov / denominator.clamp_min(1e-8))
    return torch.stack(losses).mean() if losses else pred.sum() * 0.0


def frame_ccc(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean over dimensions of the CCC of every labelled frame (for the history)."""
    values = [ccc(y[..., d].ravel(), pred[..., d].ravel()) for d in range(y.shape[-1])]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


class Regression:
    """Frame-wise targets y (N, T, D), NaN where unlabelled → outputs (B, T, D)."""

    task = "regress"

    def __init__(self, loss: str = "mse", dimensions: list[str] | None = None, where: str = ""):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss, self.dimensions, self.where = loss, dimensions, where
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def prepare(self, y: torch.Tensor, held: np.ndarray) -> torch.Tensor:
        """The targets standardised with the mean and std of the fitted (not held-out) frames."""
        raw = y.numpy()
        fitted_on = raw[~held].reshape(-1, raw.shape[-1])
        empty = ~np.isfinite(fitted_on).any(0)
        if empty.any():
            names = self.dimensions or [str(d) for d in range(raw.shape[-1])]
            missing = ", ".join(n for n, e in zip(names, empty, strict=True) if e)
            raise DataError(
                f"{self.where}: no training clip has a labelled frame of {missing}; label "
                "more frames of the training subjects, or use fewer folds (cv.k)"
            )
        self.mean = np.nanmean(fitted_on, 0)
        self.std = np.maximum(np.nanstd(fitted_on, 0), 1e-6)
        return torch.from_numpy(((raw - self.mean) / self.std).astype(np.float32))

    def restore(self, out: np.ndarray) -> np.ndarray:
        """Outputs in standardised units → the targets' units."""
        return out * self.std + self.mean

    def sample_weight(self, y: torch.Tensor) -> None:
        return None

    def draw(self, y: torch.Tensor) -> None:
        return None

    def criterion(self, y: torch.Tensor, device: str):
        return lambda pred, target: masked_loss(pred, target, self.loss)

    def hits(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return 0.0

    def scores(self, loss: float, hits: float, n: int) -> dict:
        return {"loss": loss}

    def validate(self, model, x_val, y_val, criterion, device: str) -> dict:
        pred = torch.from_numpy(outputs(model, x_val, device))
        return {
            "val_loss": float(masked_loss(pred, y_val, self.loss)),
            "val_ccc": frame_ccc(pred.numpy(), y_val.numpy()),
        }
