"""The `train` stage of a regress run: one model on one backbone's features for one fold.

Training clips are those of the videos outside fold k; each clip's targets are its frames'
rows of `targets.h5` (NaN where unlabelled, and on the frames that pad a short clip: they
count in no loss). Everything fitted on labels uses the training clips only: the input
normalisation, the targets' mean and std (the model learns standardised targets; its
predictions are scaled back: `objectives.Regression`), the epoch (`val_subjects` of the training subjects held out,
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
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pipeline.clips import average_windows
from pipeline.common import (
    atomic_path,
    parse_params,
    resolve_device,
    run_main,
    set_threads,
    setup_logging,
    versions,
    write_csv_atomic,
)
from pipeline.engine import train_selected
from pipeline.models import build_model
from pipeline.objectives import LOSSES, Regression, frame_ccc, outputs
from pipeline.splits import split
from pipeline.store import open_h5
from pipeline.train import fold_arguments, stage_inputs

log = logging.getLogger(__name__)


def clip_targets(path: str, table: pd.DataFrame, length: int) -> tuple[np.ndarray, list[str]]:
    """(N, length, D) float32 targets of the clips of `table` (NaN: unlabelled or padding),
    and the dimension names."""
    with open_h5(path) as f:
        dims = [str(d) for d in f.attrs["dimensions"]]
        out = np.full((len(table), length, len(dims)), np.nan, np.float32)
        cache: dict[str, np.ndarray] = {}
        for i, (vid, s, e) in enumerate(zip(table.video_id, table.start, table.stop, strict=True)):
            if vid not in cache:
                cache = {vid: f[vid]["values"][:]}  # clips come grouped by video
            values = cache[vid][s:e][:length]
            out[i, : len(values)] = values
    return out, dims


def onto_frames(test: pd.DataFrame, pred: np.ndarray) -> dict[str, np.ndarray]:
    """video_id → (n_frames, D): each frame's predictions averaged over the clips covering it."""
    return {
        vid: average_windows(
            pred[rows.index], rows[["start", "stop"]].to_numpy(), int(rows.n_frames.iloc[0])
        )
        for vid, rows in test.groupby("video_id", sort=True)
    }


def frame_rows(test, frames, targets_path, dims, fold) -> pd.DataFrame:
    """predictions.csv: one row per frame of every test video."""
    parts = []
    videos = test.drop_duplicates("video_id").set_index("video_id")
    with open_h5(targets_path) as f:
        for vid, pred in frames.items():
            true = f[vid]["values"][: len(pred)]
            part = pd.DataFrame(
                {
                    "video_id": vid,
                    "subject": videos.subject[vid],
                    "fold": fold,
                    "frame": np.arange(len(pred)),
                }
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
    params, settings, folds, _, clips, reader = stage_inputs(args)
    train, test = split(clips, folds, args.fold)
    x = torch.from_numpy(reader.clips(train, args.clip_length))
    y_raw, dims = clip_targets(args.targets, train, args.clip_length)
    x_test = torch.from_numpy(reader.clips(test, args.clip_length))
    log.info(
        "fold %d: %d training clips, %d test clips, dimensions %s",
        args.fold,
        len(x),
        len(test),
        ", ".join(dims),
    )
    input_shape = tuple(x.shape[1:])

    def build():
        return build_model(args.model, len(dims), input_shape, params, task="regress")

    label = f"{args.model} on {args.backbone}, fold {args.fold}"
    objective = Regression(args.loss, dims, where=label)
    y = torch.from_numpy(y_raw)
    fitted = train_selected(
        build, x, y, train, settings, seed, device, objective=objective, label=label
    )
    model, history, held = fitted.model, fitted.history, fitted.held
    pred = objective.restore(outputs(model, x_test, device))
    table = frame_rows(test, onto_frames(test, pred), args.targets, dims, args.fold)
    meta = {
        "task": "regress",
        "model": args.model,
        "backbone": args.backbone,
        "fold": args.fold,
        "classes": dims,  # one output per dimension (the name load_checkpoint reads)
        "dimensions": dims,
        "target_mean": [float(v) for v in objective.mean],
        "target_std": [float(v) for v in objective.std],
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
        "refit": fitted.refit,
        "best_epoch": fitted.best_epoch,
        "epochs_run": fitted.epochs_run,
        "versions": versions(),
    }
    with atomic_path(args.out_weights) as tmp:
        torch.save({"state_dict": model.cpu().state_dict(), "meta": meta}, tmp)
    write_csv_atomic(args.out_history, history)
    write_csv_atomic(args.out_predictions, table)
    scores = {
        d: frame_ccc(table[[f"pred_{d}"]].to_numpy(), table[[f"true_{d}"]].to_numpy()) for d in dims
    }
    log.info(
        "fold %d: test CCC %s", args.fold, ", ".join(f"{d} {v:.3f}" for d, v in scores.items())
    )


if __name__ == "__main__":
    run_main(main)
