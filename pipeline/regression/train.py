"""The `train` stage of a regress run: one model on one backbone's features for one fold.

Training clips are those of the videos outside fold k; each clip's targets are its frames'
rows of `targets.h5` (NaN where unlabelled, and on the frames that pad a short clip: they
count in no loss). Everything fitted on labels uses the training clips only: the input
normalisation, the targets' mean and std (the model learns standardised targets; its
predictions are scaled back), the epoch (`val_subjects` of the training subjects held out,
early stopping after `patience` epochs, the best epoch's weights kept, `refit` as in
classification) and the ridge baseline's penalty.

Models: every frame gets an output. `mstcn` as published, each stage refining the frame-wise
predictions of the one before (with its smoothing loss on consecutive frames); `gru` and
`transformer` sequence to sequence (a head on every step); `ridge`, the baseline, predicts
one value per clip from its mean features. Loss (`regress.loss`): `mse`, or `ccc` (1 − the
concordance correlation of the batch's labelled frames, per dimension, averaged).

A test clip's frame-wise predictions are averaged over the overlapping windows that cover a
frame, so every frame of a test video gets one prediction. Outputs under
`models/{model}/{backbone}/fold{k}/`:

    model.pt         state_dict + metadata (task regress, dimensions, target mean/std, …)
    history.csv      phase, epoch, lr, loss, val_loss, val_ccc, best, seconds
    predictions.csv  one row per frame of every test video: video_id, subject, fold, frame,
                     true_<dim> (empty: unlabelled), pred_<dim>
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from pipeline.clips import average_windows
from pipeline.common import (
    ConfigError,
    atomic_path,
    parse_params,
    read_csv,
    resolve_device,
    run_main,
    seed_everything,
    set_threads,
    setup_logging,
    write_csv_atomic,
)
from pipeline.engine import Training, make_optimizer, make_schedule, versions
from pipeline.models import build_model, split_params
from pipeline.splits import inner_split, split
from pipeline.store import open_reader
from pipeline.train import fold_arguments

log = logging.getLogger(__name__)

LOSSES = ("mse", "ccc")


def clip_targets(path: str, table: pd.DataFrame, length: int) -> tuple[np.ndarray, list[str]]:
    """(N, length, D) float32 targets of the clips of `table` (NaN: unlabelled or padding),
    and the dimension names."""
    with h5py.File(path, "r") as f:
        dims = [str(d) for d in f.attrs["dimensions"]]
        out = np.full((len(table), length, len(dims)), np.nan, np.float32)
        cache: dict[str, np.ndarray] = {}
        for i, (vid, s, e) in enumerate(zip(table.video_id, table.start, table.stop, strict=True)):
            if vid not in cache:
                cache = {vid: f[vid]["values"][:]}  # clips come grouped by video
            values = cache[vid][s:e][:length]
            out[i, : len(values)] = values
    return out, dims


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
    from pipeline.continuous import ccc

    values = [ccc(y[..., d].ravel(), pred[..., d].ravel()) for d in range(y.shape[-1])]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def outputs(model, x: torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
    """(N, T, D) frame-wise outputs of `model` (standardised units)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model.per_frame(x[i : i + batch_size].to(device)).cpu())
    return torch.cat(out).numpy()


def fit(model, x, y, settings: Training, loss: str, seed: int, device: str, x_val=None, y_val=None):
    """Train on clips x and standardised targets y (N, T, D); return the history. Closed-form
    models (ridge) choose their penalty on the validation clips and fit in one call."""
    model.fit_normalization(x)
    model.to(device)
    validate = x_val is not None and len(x_val) > 0
    if model.closed_form:
        t0 = time.perf_counter()
        row = {"phase": "fit", "epoch": 1, "lr": float("nan")}
        row.update(model.fit_regression(x, y, x_val, y_val))
        row.update(best=True, seconds=time.perf_counter() - t0)
        return pd.DataFrame([row])
    opt = make_optimizer(model, settings)
    schedule = make_schedule(opt, settings)
    gen = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, waited, rows = math.inf, None, 0, 0, []
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            opt.zero_grad()
            batch_loss = model.regression_objective(
                x[idx].to(device), y[idx].to(device), lambda p, t: masked_loss(p, t, loss)
            )
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(idx)
        row = {"phase": "fit", "epoch": epoch, "lr": opt.param_groups[0]["lr"]}
        row["loss"] = total / len(x)
        if schedule is not None:
            schedule.step()
        if validate:
            pred = torch.from_numpy(outputs(model, x_val, device))
            row["val_loss"] = float(masked_loss(pred, y_val, loss))
            row["val_ccc"] = frame_ccc(pred.numpy(), y_val.numpy())
            if row["val_loss"] < best_loss:
                best_loss, best_epoch, waited = row["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        log.info("epoch %d: loss %.4f%s", epoch, row["loss"],
                 f", val loss {row['val_loss']:.4f}, val CCC {row['val_ccc']:.3f}"
                 if validate else "")  # fmt: skip
        if validate and settings.patience and waited >= settings.patience:
            break
    history = pd.DataFrame(rows)
    if best_state is not None:
        model.load_state_dict(best_state)
    history["best"] = history.epoch == (best_epoch if validate else history.epoch.max())
    return history


def onto_frames(test: pd.DataFrame, pred: np.ndarray) -> dict[str, np.ndarray]:
    """video_id → (n_frames, D): each frame's predictions averaged over the clips covering it."""
    return {
        vid: average_windows(
            pred[rows.index], rows[["start", "stop"]].to_numpy(), int(rows.n_frames.iloc[0])
        )  # fmt: skip
        for vid, rows in test.groupby("video_id", sort=True)
    }


def frame_rows(test, frames, targets_path, dims, fold) -> pd.DataFrame:
    """predictions.csv: one row per frame of every test video."""
    parts = []
    videos = test.drop_duplicates("video_id").set_index("video_id")
    with h5py.File(targets_path, "r") as f:
        for vid, pred in frames.items():
            true = f[vid]["values"][: len(pred)]
            part = pd.DataFrame(
                {
                    "video_id": vid,
                    "subject": videos.subject[vid],
                    "fold": fold,
                    "frame": np.arange(len(pred)),
                }  # fmt: skip
            )
            for d, name in enumerate(dims):
                part[f"true_{name}"] = true[:, d]
                part[f"pred_{name}"] = pred[:, d].astype(np.float32)
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = fold_arguments("Train a frame-wise regressor on one fold.")
    ap.add_argument("--targets", required=True, help="targets.h5")
    ap.add_argument("--loss", choices=LOSSES, default="mse")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    seed = args.seed + args.fold
    device = resolve_device(args.device)
    params = parse_params(args.params)
    settings, _ = split_params(args.model, params)
    folds = read_csv(args.folds)
    clips = read_csv(args.clips)
    train, test = split(clips, folds, args.fold)
    videos = clips[clips.video_id.isin(folds.video_id)].drop_duplicates("video_id")
    subject_of = dict(zip(videos.video_id, videos.subject, strict=True))
    reader = open_reader(args.features, args.normalize, subject_of)
    x = torch.from_numpy(reader.clips(train, args.clip_length))
    y_raw, dims = clip_targets(args.targets, train, args.clip_length)
    x_test = torch.from_numpy(reader.clips(test, args.clip_length))
    held = inner_split(train, settings.val_subjects, seed)
    fitted_on = y_raw[~held].reshape(-1, len(dims))
    if not np.isfinite(fitted_on).any(0).all():
        raise ConfigError(
            f"fold {args.fold}: a dimension has no labelled frame among the training clips"
        )
    mean, std = np.nanmean(fitted_on, 0), np.maximum(np.nanstd(fitted_on, 0), 1e-6)
    y = torch.from_numpy(((y_raw - mean) / std).astype(np.float32))
    input_shape = tuple(x.shape[1:])
    log.info("fold %d: %d training clips (%d held out), %d test clips, dimensions %s",
             args.fold, len(x), int(held.sum()), len(test), ", ".join(dims))  # fmt: skip

    def build():
        return build_model(args.model, len(dims), input_shape, params, task="regress")

    seed_everything(seed)
    model = build()
    mask = torch.from_numpy(held.copy())
    history = fit(model, x[~mask], y[~mask], settings, args.loss, seed, device, x[mask], y[mask])
    best_epoch = int(history.epoch[history.best].iloc[0])
    refit = bool(settings.refit and held.any() and not model.closed_form)
    if refit:
        seed_everything(seed)
        model = build()
        again = fit(model, x, y, dataclasses.replace(settings, epochs=best_epoch), args.loss,
                    seed, device)  # fmt: skip
        history = pd.concat([history, again.assign(phase="refit")], ignore_index=True)
    pred = outputs(model, x_test, device) * std + mean
    table = frame_rows(test, onto_frames(test, pred), args.targets, dims, args.fold)
    meta = {
        "task": "regress",
        "model": args.model,
        "backbone": args.backbone,
        "fold": args.fold,
        "classes": dims,  # one output per dimension (the name load_checkpoint reads)
        "dimensions": dims,
        "target_mean": [float(v) for v in mean],
        "target_std": [float(v) for v in std],
        "loss": args.loss,
        "params": params,
        "input_shape": list(input_shape),
        "clip_length": args.clip_length,
        "normalize": args.normalize,
        "preprocessing": parse_params(args.preprocessing),
        "seed": seed,
        "train_subjects": sorted(map(str, train.subject[~held].unique())),
        "val_subjects": sorted(map(str, train.subject[held].unique())),
        "test_subjects": sorted(map(str, test.subject.unique())),
        "refit": refit,
        "best_epoch": best_epoch,
        "versions": versions(),
    }
    with atomic_path(args.out_weights) as tmp:
        torch.save({"state_dict": model.cpu().state_dict(), "meta": meta}, tmp)
    write_csv_atomic(args.out_history, history)
    write_csv_atomic(args.out_predictions, table)
    scores = [frame_ccc(table[[f"pred_{d}"]].to_numpy(), table[[f"true_{d}"]].to_numpy())
              for d in dims]  # fmt: skip
    log.info("fold %d: test CCC %s", args.fold,
             ", ".join(f"{d} {s:.3f}" for d, s in zip(dims, scores, strict=True)))  # fmt: skip


if __name__ == "__main__":
    run_main(main)
