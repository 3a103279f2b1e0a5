"""The training engine: one loop for every network the pipeline fits on labels.

The temporal models (`pipeline.train`) and the per-fold backbones (`pipeline.train_backbone`)
are both trained here, the same way:

- `Training` holds the settings every trained thing shares (learning rate, epochs, optimiser,
  schedule, class balance, inner validation, early stopping, refit). Its defaults are the
  schema's (`definitions.training`; a test checks that they agree).
- `fit` trains a `Trainable` on tensors x (N, ...) and labels y (N,): class-weighted
  cross-entropy (or the model's own `objective`), Adam or SGD, optional step decay, an
  optional augmentation function applied to training batches only, and, given a validation
  split, early stopping that keeps the best epoch's weights. Models with a closed-form fit
  (`closed_form = True`, the meanpool baseline) are fitted in one call instead.
- `train_selected` adds model selection: whole training subjects held out
  (`pipeline.splits.inner_split`), the epoch chosen on them, and with `refit` a second run on
  every training subject for that many epochs.

Training is seeded (the caller passes seed + fold) and deterministic on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.common import ConfigError, seed_everything
from pipeline.splits import inner_split

log = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Trainable(nn.Module):
    """What the engine trains: a classifier (B, ...) → (B, n_classes) logits.

    Subclasses may override:
        closed_form: True when `fit_closed_form(x, y, sample_weight)` fits the model in one
            call instead of gradient steps (meanpool).
        fit_normalization(x): set input statistics from the training tensors before fitting.
        objective(x, y, criterion): the training loss and the logits of a batch (for models
            with extra losses); by default the criterion on the logits.
    """

    closed_form = False
    n_classes: int

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Nothing to fit by default."""

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, logits (B, K)) of a batch; `criterion` is the fold's weighted CE."""
        logits = self(x)
        return criterion(logits, y), logits


@dataclass(frozen=True)
class Training:
    """Training settings shared by every trained model and per-fold backbone.

    Args:
        lr: learning rate (of Adam or SGD).
        epochs: training epochs (the most; early stopping may stop sooner).
        batch_size: samples per optimisation step.
        weight_decay: L2 weight decay.
        optimizer: adam, or sgd with `momentum`.
        momentum: SGD momentum.
        lr_step: multiply the learning rate by `lr_gamma` every lr_step epochs (0: constant).
        lr_gamma: that factor.
        augment: pixel models: true, false, or a mapping of strengths (`pipeline.augment`).
        val_subjects: fraction of the training subjects held out for choosing the epoch.
        patience: stop after this many epochs without a lower validation loss (0: never).
        refit: after choosing the epoch, train again on every training subject.
        balance: weighted (class-weighted loss), sampler (classes drawn equally often), none.
    """

    lr: float = 0.001
    epochs: int = 20
    batch_size: int = 32
    weight_decay: float = 0.0001
    optimizer: str = "adam"
    momentum: float = 0.9
    lr_step: int = 0
    lr_gamma: float = 0.1
    augment: bool | dict = True
    val_subjects: float = 0.2
    patience: int = 5
    refit: bool = False
    balance: str = "weighted"

    def __post_init__(self):
        if self.balance not in ("weighted", "sampler", "none"):
            raise ConfigError(f"balance must be weighted, sampler or none, got {self.balance!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, got {self.optimizer!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def take(cls, params: dict) -> tuple[Training, dict]:
        """(the training settings among `params`, the other keys)."""
        mine = {k: v for k, v in params.items() if k in cls.keys()}
        return cls(**mine), {k: v for k, v in params.items() if k not in mine}


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over present classes); absent classes weigh 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(
        counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0
    )
    return weights.astype(np.float32)


def make_optimizer(model: nn.Module, settings: Training) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, settings: Training):
    """Step decay every `lr_step` epochs, or None (a constant learning rate)."""
    if not settings.lr_step:
        return None
    return torch.optim.lr_scheduler.StepLR(opt, settings.lr_step, settings.lr_gamma)


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


def predict(model: nn.Module, x: torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, K) for samples x (N, ...)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu())
    return torch.cat(out).numpy()


def _fit_in_one_call(model, x, y, settings, weights, device, x_val, y_val) -> pd.DataFrame:
    """A closed-form model's fit as a one-row history (its validation loss if given)."""
    t0 = time.perf_counter()
    sample_weight = (
        weights[y.numpy()] if settings.balance != "none" else np.ones(len(y), np.float32)
    )
    row = {
        "phase": "fit",
        "epoch": 1,
        "lr": float("nan"),
        **model.fit_closed_form(x, y, sample_weight),
    }
    if x_val is not None and len(x_val):
        row["val_loss"], row["val_acc"] = evaluate_loss(
            model, x_val, y_val, nn.CrossEntropyLoss(), device
        )
    row.update(best=True, seconds=time.perf_counter() - t0)
    return pd.DataFrame([row])


def fit(
    model: Trainable,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Training,
    seed: int,
    device: str,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    augment: Augment | None = None,
) -> pd.DataFrame:
    """Train `model` on x (N, ...) and y (N,); return the per-epoch history.

    Columns: phase, epoch, lr, loss, train_acc, [val_loss, val_acc], seconds, best. With a
    validation split (x_val, y_val) the weights of the epoch with the lowest validation loss
    are restored at the end, and training stops after `patience` epochs without improvement
    (0: never stops early). `augment(batch, generator)` transforms training batches only.
    """
    from tqdm import tqdm

    model.fit_normalization(x)
    model.to(device)
    weights = class_weights(y.numpy(), model.n_classes)
    if model.closed_form:
        return _fit_in_one_call(model, x, y, settings, weights, device, x_val, y_val)

    loss_weights = weights if settings.balance == "weighted" else np.ones_like(weights)
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(loss_weights).to(device))
    opt = make_optimizer(model, settings)
    schedule = make_schedule(opt, settings)
    gen = torch.Generator().manual_seed(seed)
    draw = torch.from_numpy(weights[y.numpy()]).double()
    validate = x_val is not None and len(x_val) > 0
    best_loss, best_state, best_epoch, waited = math.inf, None, 0, 0
    rows = []
    name = type(model).__name__
    for epoch in tqdm(range(1, settings.epochs + 1), desc=name, disable=None):
        t0 = time.perf_counter()
        model.train()
        if settings.balance == "sampler":  # classes drawn equally often, with replacement
            order = torch.multinomial(draw, len(x), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(x), generator=gen)
        total = correct = 0.0
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss, logits = model.objective(xb, yb, criterion)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        lr = opt.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        row = {"phase": "fit", "epoch": epoch, "lr": lr}
        row.update(loss=total / len(x), train_acc=correct / len(x))
        if validate:
            row["val_loss"], row["val_acc"] = evaluate_loss(model, x_val, y_val, criterion, device)
            if row["val_loss"] < best_loss:
                best_loss, best_epoch, waited = row["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        log.info(
            "%s epoch %d: loss %.4f, train acc %.3f%s",
            name,
            epoch,
            row["loss"],
            row["train_acc"],
            f", val loss {row['val_loss']:.4f}, val acc {row['val_acc']:.3f}" if validate else "",
        )
        if validate and settings.patience and waited >= settings.patience:
            log.info("no improvement for %d epochs: stopping at epoch %d", waited, epoch)
            break
    history = pd.DataFrame(rows)
    if best_state is not None:
        model.load_state_dict(best_state)
        log.info("kept epoch %d (validation loss %.4f)", best_epoch, best_loss)
    history["best"] = history.epoch == (best_epoch if validate else history.epoch.max())
    return history


@dataclass
class Selected:
    """What `train_selected` returns."""

    model: Trainable
    history: pd.DataFrame  # the fit phase, then the refit phase if any
    held: np.ndarray  # (N,) bool: the samples of the validation subjects
    best_epoch: int
    refit: bool  # whether the model was refitted on every training subject


def train_selected(
    build: Callable[[], Trainable],
    x: torch.Tensor,
    y: torch.Tensor,
    samples: pd.DataFrame,
    settings: Training,
    seed: int,
    device: str,
    augment: Augment | None = None,
) -> Selected:
    """Train a model from `build()` with model selection on held-out training subjects.

    `samples` has one row per sample of x (video_id, subject, label): `settings.val_subjects`
    of its subjects are held out (none for closed-form models), the epoch with the lowest
    validation loss is kept, and with `settings.refit` the model is built and trained again on
    every sample for that many epochs. Seeded: the same inputs and seed give the same model.
    """
    seed_everything(seed)
    model = build()
    fraction = 0.0 if model.closed_form else settings.val_subjects
    held = inner_split(samples, fraction, seed)
    mask = torch.from_numpy(held.copy())
    log.info(
        "%d training samples (%d subjects) + %d validation samples (subjects %s)",
        int((~held).sum()),
        samples.subject[~held].nunique(),
        int(held.sum()),
        ", ".join(sorted(map(str, samples.subject[held].unique()))) or "none",
    )
    history = fit(model, x[~mask], y[~mask], settings, seed, device, x[mask], y[mask], augment)
    best_epoch = int(history.epoch[history.best].iloc[0])
    refit = bool(settings.refit and held.any())
    if refit:
        log.info("refit on all %d training samples for %d epochs", len(x), best_epoch)
        seed_everything(seed)
        model = build()
        again = fit(
            model,
            x,
            y,
            dataclasses.replace(settings, epochs=best_epoch),
            seed,
            device,
            augment=augment,
        )
        history = pd.concat([history, again.assign(phase="refit")], ignore_index=True)
    return Selected(model, history, held, best_epoch, refit)


def versions() -> dict[str, str]:
    """The versions a trained checkpoint records (plain strings: weights_only loads them)."""
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "scikit-learn": str(sklearn.__version__),
    }
