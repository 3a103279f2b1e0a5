"""The training engine: one loop for every network the pipeline fits on labels.

The temporal models (`pipeline.train`, and `pipeline.regression.train` for a regress run) and
the per-fold backbones (`pipeline.train_backbone`) are all trained here, the same way:

- `settings.Training` holds the settings every trained thing shares (learning rate, epochs,
  optimiser, schedule, class balance, inner validation, early stopping, refit).
- The task's objective (`pipeline.objectives`: `Classification` or `Regression`) gives the
  loss, the validation score and the targets' standardisation.
- `fit` trains a `Trainable` (`pipeline.models.base`) on tensors x (N, ...) and targets y:
  the objective's loss (or the model's own `objective`, which adds its terms), Adam or SGD,
  optional step decay, an optional augmentation function applied to training batches only,
  and, given a validation split, early stopping that keeps the best epoch's weights. Models
  with a closed-form fit (`closed_form = True`: meanpool, ridge) are fitted in one call.
- `train_selected` adds model selection: whole training subjects held out
  (`pipeline.splits.inner_split`), the epoch chosen on them, and with `refit` a second run on
  every training subject for that many epochs.

Training is seeded (the caller passes seed + fold) and deterministic on CPU. A run whose
validation loss is never finite stops with a `TrainingError` naming the model, fold and epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.common import TrainingError, seed_everything
from pipeline.models.base import Trainable
from pipeline.objectives import (
    Classification,
    Regression,
    class_weights,
    describe,
    evaluate_loss,
)
from pipeline.settings import Training
from pipeline.splits import inner_split

__all__ = ["Training", "class_weights", "evaluate_loss", "fit", "predict", "train_selected"]

log = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Objective = Classification | Regression


def make_optimizer(model: torch.nn.Module, settings: Training) -> torch.optim.Optimizer:
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


def predict(
    model: torch.nn.Module, x: torch.Tensor, device: str, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (N, K) for samples x (N, ...)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu())
    return torch.cat(out).numpy()


def _fit_in_one_call(model, x, y, objective, device, x_val, y_val) -> pd.DataFrame:
    """A closed-form model's fit as a one-row history (its validation loss if given)."""
    t0 = time.perf_counter()
    validate = x_val is not None and len(x_val) > 0
    row = {"phase": "fit", "epoch": 1, "lr": float("nan")}
    row.update(
        model.fit_closed_form(x, y, objective.sample_weight(y), x_val if validate else None, y_val)
    )
    if validate and "val_loss" not in row:
        row.update(objective.validate(model, x_val, y_val, None, device))
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
    objective: Objective | None = None,
    label: str | None = None,
) -> pd.DataFrame:
    """Train `model` on x (N, ...) and targets y; return the per-epoch history.

    Columns: phase, epoch, lr, loss, the objective's training score (train_acc), [val_loss
    and its validation score (val_acc, val_ccc)], seconds, best. With a validation split
    (x_val, y_val) the weights of the epoch with the lowest validation loss are restored at the
    end, and training stops after `patience` epochs without improvement (0: never stops
    early). `augment(batch, generator)` transforms training batches only. `objective` defaults
    to classification into `model.n_classes` classes; `label` names the run in messages.
    """
    from tqdm import tqdm

    objective = objective or Classification(model.n_classes, settings)
    name = label or type(model).__name__
    model.fit_normalization(x)
    model.to(device)
    if model.closed_form:
        return _fit_in_one_call(model, x, y, objective, device, x_val, y_val)

    criterion = objective.criterion(y, device)
    opt = make_optimizer(model, settings)
    schedule = make_schedule(opt, settings)
    gen = torch.Generator().manual_seed(seed)
    draw = objective.draw(y)
    validate = x_val is not None and len(x_val) > 0
    best_loss, best_state, best_epoch, waited = math.inf, None, 0, 0
    rows = []
    for epoch in tqdm(range(1, settings.epochs + 1), desc=name, disable=None):
        t0 = time.perf_counter()
        model.train()
        if draw is not None:  # classes drawn equally often, with replacement
            order = torch.multinomial(draw, len(x), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(x), generator=gen)
        total = hits = 0.0
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss, out = model.objective(xb, yb, criterion)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            hits += objective.hits(out, yb)
        lr = opt.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        row = {"phase": "fit", "epoch": epoch, "lr": lr}
        row.update(objective.scores(total / len(x), hits, len(x)))
        if validate:
            row.update(objective.validate(model, x_val, y_val, criterion, device))
            if row["val_loss"] < best_loss:
                best_loss, best_epoch, waited = row["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        log.info("%s epoch %d: %s", name, epoch, describe(row))
        if validate and settings.patience and waited >= settings.patience:
            log.info("no improvement for %d epochs: stopping at epoch %d", waited, epoch)
            break
    history = pd.DataFrame(rows)
    if validate and best_state is None:
        raise TrainingError(
            f"{name}: the validation loss was not finite at any epoch (1 to {len(rows)}, "
            f"training loss {rows[-1]['loss']:.4g} at epoch {len(rows)}), so there is no epoch "
            "to keep. Lower the model's lr, or check the features for NaN or inf values "
            "(`python -m pipeline.qc` lists damaged videos)"
        )
    if best_state is not None:
        model.load_state_dict(best_state)
        log.info("%s: kept epoch %d (validation loss %.4f)", name, best_epoch, best_loss)
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
    objective: Objective  # fitted: a regression's target mean and std

    @property
    def epochs_run(self) -> int:
        return int(self.history.epoch[self.history.phase == "fit"].max())


def train_selected(
    build: Callable[[], Trainable],
    x: torch.Tensor,
    y: torch.Tensor,
    samples: pd.DataFrame,
    settings: Training,
    seed: int,
    device: str,
    augment: Augment | None = None,
    objective: Objective | None = None,
    label: str | None = None,
) -> Selected:
    """Train a model from `build()` with model selection on held-out training subjects.

    `samples` has one row per sample of x (video_id, subject, label): `settings.val_subjects`
    of its subjects are held out (none for closed-form models, unless they choose a setting on
    them), the epoch with the lowest validation loss is kept, and with `settings.refit` the
    model is built and trained again on every sample for that many epochs. The objective's
    targets (a regression's standardised values) are fitted on the samples not held out.
    Seeded: the same inputs and seed give the same model.
    """
    seed_everything(seed)
    model = build()
    objective = objective or Classification(model.n_classes, settings)
    name = label or type(model).__name__
    holds = not model.closed_form or model.selects
    held = inner_split(samples, settings.val_subjects if holds else 0.0, seed)
    mask = torch.from_numpy(held.copy())
    log.info(
        "%s: %d training samples (%d subjects) + %d validation samples (subjects %s)",
        name,
        int((~held).sum()),
        samples.subject[~held].nunique(),
        int(held.sum()),
        ", ".join(sorted(map(str, samples.subject[held].unique()))) or "none",
    )
    y = objective.prepare(y, held)
    history = fit(
        model,
        x[~mask],
        y[~mask],
        settings,
        seed,
        device,
        x_val=x[mask],
        y_val=y[mask],
        augment=augment,
        objective=objective,
        label=name,
    )
    best_epoch = int(history.epoch[history.best].iloc[0])
    refit = bool(settings.refit and held.any() and not model.closed_form)
    if refit:
        log.info("%s: refit on all %d training samples for %d epochs", name, len(x), best_epoch)
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
            objective=objective,
            label=name,
        )
        history = pd.concat([history, again.assign(phase="refit")], ignore_index=True)
    return Selected(model, history, held, best_epoch, refit, objective)
