"""The `train_backbone` stage: fit a per-fold backbone on one fold's training subjects.

Generic over backbones: the catalog entry of a per-fold backbone names its trainer
("module:function"); this stage splits the fold by subject (`pipeline.splits.split`, which
refuses a subject on both sides), hands the trainer the training videos only
(`backbones.FoldFrames`) with the backbone's settings, and writes what it returns:

    model.pt     state_dict + metadata: backbone, fold, classes, train/validation subjects,
                 versions, and the trainer's own (e.g. params with the architecture the
                 backbone's class rebuilds the network from)
    history.csv  the engine's per-epoch history (phase, epoch, lr, loss, train_acc, ...)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import pandas as pd
import torch

from pipeline import catalog
from pipeline.backbones import FoldFrames, backbone_settings, pick
from pipeline.common import (
    atomic_path,
    check_keys,
    parse_params,
    read_csv,
    run_main,
    set_threads,
    setup_logging,
    versions,
    write_csv_atomic,
)
from pipeline.splits import split

log = logging.getLogger(__name__)


def train_backbone(
    name: str, aligned: list[str], folds: pd.DataFrame, fold: int, params: dict
) -> tuple[dict, pd.DataFrame]:
    """Train per-fold backbone `name` inside `fold`: (the model.pt contents, the history)."""
    check_keys(f"backbones.{name}", params, backbone_settings(name))
    trainer = catalog.trainer(name)
    train, _ = split(folds, folds, fold)
    classes = sorted(folds.label.unique())
    data = FoldFrames(list(aligned), train[["video_id", "subject", "label"]], classes, fold)
    log.info("%s, fold %d: %d training videos", name, fold, len(train))
    trained = trainer(data, **pick(trainer, params, skip=("data",)))
    subjects = sorted(map(str, train.subject.unique()))
    val = list(trained.val_subjects)
    meta = {
        **trained.meta,
        "backbone": name,
        "fold": fold,
        "classes": classes,
        "train_subjects": [s for s in subjects if s not in val],
        "val_subjects": val,
        "versions": versions(),
    }
    return {"state_dict": trained.net.cpu().state_dict(), "meta": meta}, trained.history


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train a per-fold backbone on one fold.")
    ap.add_argument("--backbone", required=True, help="a per-fold backbone of the catalog")
    ap.add_argument("--aligned", nargs="+", required=True, help="aligned/shard-*.h5")
    ap.add_argument("--folds", required=True, help="results/folds.csv")
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--params", default="{}", help="the backbone's config section as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="backbones/{backbone}/fold{k}/model.pt")
    ap.add_argument("--out-history", required=True, help="backbones/{backbone}/fold{k}/history.csv")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    folds = read_csv(args.folds)
    checkpoint, history = train_backbone(
        args.backbone, args.aligned, folds, args.fold, parse_params(args.params)
    )
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    write_csv_atomic(args.out_history, history)


if __name__ == "__main__":
    run_main(main)
