"""The `train` stage: fit one temporal model on one backbone's features for one fold.

Training clips are those of the videos outside fold k, test clips those inside; everything
fitted (input normalisation, class weights) uses the training clips only. Training is seeded
(seed + fold) and deterministic on CPU.

Outputs under `models/{model}/{backbone}/fold{k}/`:

    model.pt         state_dict + metadata (model, backbone, classes, params, input shape)
    history.csv      epoch, lr, loss, train_acc, seconds
    predictions.csv  one row per test clip: video_id, subject, label, start, stop, fold,
                     pred and p_<class> probabilities
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline import catalog
from pipeline.common import (
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
from pipeline.store import ClipReader

log = logging.getLogger(__name__)

TRAIN_KEYS = (
    "lr",
    "epochs",
    "batch_size",
    "weight_decay",
    "augment",
    "backbones",
    "optimizer",
    "momentum",
    "lr_step",
    "lr_gamma",
)
DEFAULTS = {
    "lr": 1e-3,
    "epochs": 20,
    "batch_size": 32,
    "weight_decay": 1e-4,
    "augment": True,
    "optimizer": "adam",
    "momentum": 0.9,
    "lr_step": 0,
    "lr_gamma": 0.1,
}


def split(clips: pd.DataFrame, folds: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test clips of `fold`; raises if a subject would be on both sides."""
    table = clips.merge(
        folds[["video_id", "fold"]], on="video_id", how="inner", validate="many_to_one"
    )
    train = table[table.fold != fold].reset_index(drop=True)
    test = table[table.fold == fold].reset_index(drop=True)
    shared = set(train.subject) & set(test.subject)
    if shared:
        raise AssertionError(f"fold {fold}: subjects on both sides: {sorted(shared)}")
    if train.empty or test.empty:
        raise AssertionError(f"fold {fold} has {len(train)} training and {len(test)} test clips")
    return train, test


def build_model(name: str, n_classes: int, input_shape: tuple[int, ...], params: dict):
    cls = catalog.load(catalog.MODELS, name, "model", "Model")
    arch = {k: v for k, v in params.items() if k not in TRAIN_KEYS}
    return cls(n_classes=n_classes, input_shape=input_shape, **arch)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over present classes); absent classes weigh 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(
        counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0
    )
    return weights.astype(np.float32)


def fit(model, x, y, params: dict, seed: int, device: str) -> pd.DataFrame:
    """Train `model` on tensors x (N, T, ...) and y (N,); return the per-epoch history.

    With `augment`, pixel clips are mirrored left-right with probability 1/2 (training only).
    """
    import torch
    from tqdm import tqdm

    p = {**DEFAULTS, **params}
    model.fit_normalization(x)
    model.to(device)
    weights = torch.from_numpy(class_weights(y.numpy(), model.n_classes)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    if p["optimizer"] == "sgd":
        opt = torch.optim.SGD(
            model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"]
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    schedule = (
        torch.optim.lr_scheduler.StepLR(opt, p["lr_step"], p["lr_gamma"]) if p["lr_step"] else None
    )
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in tqdm(range(1, p["epochs"] + 1), desc="epochs", disable=None):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = correct = 0.0
        for i in range(0, len(x), p["batch_size"]):
            idx = order[i : i + p["batch_size"]]
            xb, yb = x[idx], y[idx]
            if p["augment"] and model.takes == catalog.PIXELS:  # (B, T, H, W, C): flip W
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None, None], xb.flip(3), xb)
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        lr = opt.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        rows.append(
            {
                "epoch": epoch,
                "lr": lr,
                "loss": total / len(x),
                "train_acc": correct / len(x),
                "seconds": time.perf_counter() - t0,
            }
        )
        log.info(
            "epoch %d: loss %.4f, train acc %.3f", epoch, rows[-1]["loss"], rows[-1]["train_acc"]
        )
    return pd.DataFrame(rows)


def predict(model, x, device: str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, K) for clips x (N, T, ...)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu())
    return torch.cat(out).numpy()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train a temporal model on one fold.")
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
    ap.add_argument("--out-weights", required=True)
    ap.add_argument("--out-history", required=True)
    ap.add_argument("--out-predictions", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    seed_everything(args.seed + args.fold)
    device = resolve_device(args.device)
    params = parse_params(args.params)
    folds = read_csv(args.folds)
    classes = sorted(folds.label.unique())
    train, test = split(read_csv(args.clips), folds, args.fold)
    reader = ClipReader(args.features)
    x_train = torch.from_numpy(reader.clips(train, args.clip_length))
    x_test = torch.from_numpy(reader.clips(test, args.clip_length))
    to_index = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([to_index[c] for c in train.label])
    log.info(
        "fold %d: %d training clips, %d test clips, input %s",
        args.fold,
        len(train),
        len(test),
        tuple(x_train.shape[1:]),
    )

    model = build_model(args.model, len(classes), tuple(x_train.shape[1:]), params)
    history = fit(model, x_train, y_train, params, args.seed + args.fold, device)
    probs = predict(model, x_test, device)

    pred = test[["video_id", "subject", "label", "start", "stop", "fold"]].copy()
    pred["pred"] = [classes[i] for i in probs.argmax(1)]
    for k, c in enumerate(classes):
        pred[f"p_{c}"] = probs[:, k]
    meta = {
        "model": args.model,
        "backbone": args.backbone,
        "fold": args.fold,
        "classes": classes,
        "params": params,
        "input_shape": list(x_train.shape[1:]),
        "clip_length": args.clip_length,
    }
    with atomic_path(args.out_weights) as tmp:
        torch.save({"state_dict": model.cpu().state_dict(), "meta": meta}, tmp)
    write_csv_atomic(args.out_history, history)
    write_csv_atomic(args.out_predictions, pred)
    log.info("fold %d: test clip accuracy %.3f", args.fold, float((pred.pred == pred.label).mean()))


if __name__ == "__main__":
    run_main(main)
