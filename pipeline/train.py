"""The `train` stage: fit one temporal model on one backbone's features for one fold.

Training clips are those of the videos outside fold k, test clips those inside; everything
fitted (input normalisation, class weights, the choice of epoch) uses the training clips
only. Training is seeded (seed + fold) and deterministic on CPU.

Training and model selection are the engine's (`pipeline.engine.train_selected`):
`val_subjects` (default 0.2) of the training fold's *subjects* are held out as an inner
validation split (grouped by subject, stratified by label as far as the subjects allow); after
every epoch the validation loss is measured, training stops after `patience` epochs without
improvement, and the weights of the best epoch are kept. With `refit: true` the model is then
trained again on the whole training fold for that many epochs. The test fold is never looked
at before the final prediction. This module only reads the fold's clips, hands them to the
engine and writes what it returns.

Outputs under `models/{model}/{backbone}/fold{k}/`:

    model.pt         state_dict + metadata (model, backbone, fold, classes, params, input
                     shape, training/validation subjects, best epoch, versions)
    history.csv      phase, epoch, lr, loss, train_acc, val_loss, val_acc, best, seconds
    predictions.csv  one row per test clip: video_id, subject, label, start, stop, fold,
                     pred and p_<class> probabilities
    onthefly.csv     one row per test video and fraction f of it seen (0.1 … 1.0): the video
                     prediction from the clips that end within its first ⌈f·n⌉ frames (or,
                     before the first clip ends, from the frames seen so far)
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pipeline import catalog
from pipeline.augment import augmenter
from pipeline.common import (
    atomic_path,
    parse_params,
    read_csv,
    resolve_device,
    run_main,
    set_threads,
    setup_logging,
    versions,
    write_csv_atomic,
)
from pipeline.engine import predict, train_selected
from pipeline.models import build_model, split_params
from pipeline.splits import split
from pipeline.store import open_reader, pad_clip

log = logging.getLogger(__name__)

FRACTIONS = tuple(round(k / 10, 1) for k in range(1, 11))


def onthefly(model, reader, test: pd.DataFrame, probs: np.ndarray, length: int, device: str):
    """Video predictions from the first 10 %, 20 %, … 100 % of every test video.

    With f·n frames seen, the video's prediction averages the clips that end by then (the
    same clips and probabilities as the full evaluation, so f = 1 is the video-level result).
    Before the first clip ends, the frames seen so far form the clip: unpadded for models that
    take any length, else padded by repeating the last frame as short videos are.
    Returns (rows of video, fraction, frames_seen, probs) as a list of dicts and an array.
    """
    rows, out, prefixes = [], [], []
    for vid, clips in test.groupby("video_id", sort=True):
        n = int(clips.n_frames.iloc[0])
        for f in FRACTIONS:
            seen = max(1, math.ceil(f * n - 1e-9))
            done = clips.index[clips.stop <= seen]
            rows.append({"video_id": vid, "fraction": f, "frames_seen": seen})
            if len(done):
                out.append(probs[done].mean(0))
            else:
                out.append(None)
                prefixes.append((len(out) - 1, vid, seen))
    by_length: dict[int, list] = {}
    for slot, vid, seen in prefixes:
        frames = reader.video(vid)[:seen]
        clip = frames if model.variable_length else pad_clip(frames, length)
        by_length.setdefault(len(clip), []).append((slot, clip))
    for items in by_length.values():
        x = torch.from_numpy(np.stack([clip for _, clip in items]))
        p = predict(model, x, device)
        for (slot, _), prob in zip(items, p, strict=True):
            out[slot] = prob
    return rows, np.stack(out)


def fold_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every per-fold training stage shares (this one, and task regress's
    `pipeline.regression.train`): inputs, model, fold, seed, device, calibration, outputs."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--clips", required=True)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--features", nargs="+", required=True, help="features/{backbone}/shard-*.h5")
    ap.add_argument("--model", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--params", default="{}", help="the model's config section as JSON")
    ap.add_argument("--clip-length", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--normalize",
        choices=("none", "per_subject", "calibrated"),
        default="none",
        help="person calibration: per_subject standardises with all the subject's videos "
        "(transductive), calibrated with the subject's other videos (never the clip itself)",
    )
    ap.add_argument(
        "--preprocessing",
        default="{}",
        help="decode, face, frontalize, clips and backbone settings (JSON), kept in model.pt "
        "for pipeline.predict",
    )
    ap.add_argument("--out-weights", required=True)
    ap.add_argument("--out-history", required=True)
    ap.add_argument("--out-predictions", required=True)
    return ap


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = fold_arguments("Train a temporal model on one fold.")
    ap.add_argument("--out-onthefly", required=True)
    return ap.parse_args(argv)


def stage_inputs(args: argparse.Namespace) -> tuple:
    """What a stage that trains a model on clips reads first (this one, and `pipeline.curve`):
    the model's settings and training settings, folds.csv, the classes, clips.csv, and a
    reader of the features, person-calibrated as `args.normalize` says."""
    params = parse_params(args.params)
    training, _ = split_params(args.model, params)
    folds = read_csv(args.folds)
    classes = sorted(folds.label.unique())
    clips = read_csv(args.clips)
    videos = clips[clips.video_id.isin(folds.video_id)].drop_duplicates("video_id")
    subject_of = dict(zip(videos.video_id, videos.subject, strict=True))
    reader = open_reader(args.features, args.normalize, subject_of)
    return params, training, folds, classes, clips, reader


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    seed = args.seed + args.fold
    device = resolve_device(args.device)
    params, training, folds, classes, clips, reader = stage_inputs(args)
    to_index = {c: i for i, c in enumerate(classes)}
    train, test = split(clips, folds, args.fold)
    x = torch.from_numpy(reader.clips(train, args.clip_length))
    y = torch.tensor([to_index[c] for c in train.label])
    x_test = torch.from_numpy(reader.clips(test, args.clip_length))
    input_shape = tuple(x.shape[1:])
    log.info(
        "fold %d: %d training clips, %d test clips, input %s, device %s",
        args.fold,
        len(x),
        len(test),
        input_shape,
        device,
    )

    def build():
        return build_model(args.model, len(classes), input_shape, params)

    takes = catalog.lookup(catalog.MODELS, args.model, "model").kind
    augment = augmenter(takes, training.augment)
    label = f"{args.model} on {args.backbone}, fold {args.fold}"
    fitted = train_selected(build, x, y, train, training, seed, device, augment, label=label)
    model, history, held = fitted.model, fitted.history, fitted.held
    probs = predict(model, x_test, device)
    rows, seen_probs = onthefly(model, reader, test, probs, args.clip_length, device)

    pred = test[["video_id", "subject", "label", "start", "stop", "fold"]].copy()
    pred["pred"] = [classes[i] for i in probs.argmax(1)]
    for k, c in enumerate(classes):
        pred[f"p_{c}"] = probs[:, k]
    early = pd.DataFrame(rows)
    early = early.merge(
        test.drop_duplicates("video_id")[["video_id", "subject", "label", "fold"]], on="video_id"
    )
    early["pred"] = [classes[i] for i in seen_probs.argmax(1)]
    for k, c in enumerate(classes):
        early[f"p_{c}"] = seen_probs[:, k]
    meta = {
        "model": args.model,
        "backbone": args.backbone,
        "fold": args.fold,
        "classes": classes,
        "params": params,
        "input_shape": list(input_shape),
        "clip_length": args.clip_length,
        "normalize": args.normalize,
        "preprocessing": parse_params(args.preprocessing),
        "seed": seed,
        "train_subjects": sorted(map(str, train.subject[~held].unique())),
        "val_subjects": sorted(map(str, train.subject[held].unique())),
        "refit": fitted.refit,
        "best_epoch": fitted.best_epoch,
        "epochs_run": fitted.epochs_run,
        "versions": versions(),
    }
    with atomic_path(args.out_weights) as tmp:
        torch.save({"state_dict": model.cpu().state_dict(), "meta": meta}, tmp)
    write_csv_atomic(args.out_history, history)
    write_csv_atomic(args.out_predictions, pred)
    write_csv_atomic(args.out_onthefly, early)
    log.info("fold %d: test clip accuracy %.3f", args.fold, float((pred.pred == pred.label).mean()))


if __name__ == "__main__":
    run_main(main)
