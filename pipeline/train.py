"""The `train` stage: fit one temporal model on one backbone's features for one fold.

Training clips are those of the videos outside fold k, test clips those inside; everything
fitted (input normalisation, class weights, the choice of epoch) uses the training clips
only. Training is seeded (seed + fold) and deterministic on CPU.

Model selection: `val_subjects` (default 0.2) of the training fold's *subjects* are held
out as an inner validation split (grouped by subject, stratified by label as far as the
subjects allow); after every epoch the validation loss is measured, training stops after
`patience` epochs without improvement, and the weights of the best epoch are kept. With
`refit: true` the model is then trained again on the whole training fold for that many
epochs. The test fold is never looked at before the final prediction.

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
import copy
import logging
import math
import platform
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline import catalog
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
from pipeline.store import ClipReader, SubjectNormalizedReader

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
    "val_subjects",
    "patience",
    "refit",
    "balance",
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
    "val_subjects": 0.2,
    "patience": 5,
    "refit": False,
    "balance": "weighted",
}
# `augment: true` for pixel models; a mapping overrides single strengths (0 turns one off).
AUGMENT = {"flip": True, "crop": 0.1, "brightness": 0.1, "contrast": 0.1, "speed": 0.2}
FRACTIONS = tuple(round(k / 10, 1) for k in range(1, 11))


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


def inner_split(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the training clips held out for validation: whole subjects only.

    About `fraction` of the subjects (at least one, never all) are chosen with scikit-learn's
    StratifiedGroupKFold on the videos, so the held-out subjects cover the labels as evenly
    as subjects allow. A fraction of 0, or fewer than 3 subjects (holding one of two out would
    halve the training data), gives no validation split.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = train.subject.unique()
    if fraction <= 0 or len(subjects) < 3:
        return np.zeros(len(train), dtype=bool)
    videos = train.drop_duplicates("video_id")
    n_splits = min(len(subjects), max(2, round(1 / fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(splitter.split(videos, videos.label, groups=videos.subject))
    val_subjects = set(videos.subject.iloc[held])
    return train.subject.isin(val_subjects).to_numpy().copy()


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


def augment_settings(value) -> dict | None:
    """The augmentation strengths of a model's `augment` setting (None: off)."""
    if value is False or value is None:
        return None
    if value is True:
        return dict(AUGMENT)
    unknown = set(value) - set(AUGMENT)
    if unknown:
        raise ConfigError(f"augment: unknown keys {sorted(unknown)}; known: {sorted(AUGMENT)}")
    return {**AUGMENT, **value}


def augment_pixels(x, gen, settings: dict):
    """Random training transforms of pixel clips (B, T, H, W, C) uint8 → float in [0, 255].

    Per clip, the same for all its frames: horizontal flip (p = 1/2) and a crop of side
    (1 − u)·H, u ∈ [0, crop], at a random place, resized back (one bilinear resampling does
    both); contrast × (1 ± contrast) about the clip mean and brightness ± brightness·255, plus
    a linear brightness drift of up to ± brightness·255 across the clip (lighting changing
    within a clip: per-clip standardisation would remove a constant change, not a drift);
    temporal speed × (1 ± speed): frames resampled at that rate from a random start, the last
    frame repeated when the clip runs out (as short videos are padded).
    """
    import torch
    from torch.nn import functional as F

    b, t, h, w, c = x.shape
    x = x.float()

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    if settings["speed"] > 0 and t > 1:
        speed = uniform(1 - settings["speed"], 1 + settings["speed"])
        room = ((t - 1) * (1 - speed)).clamp_min(0)
        start = torch.rand(b, generator=gen) * room
        idx = (start[:, None] + speed[:, None] * torch.arange(t)).round().long().clamp(0, t - 1)
        x = x[torch.arange(b)[:, None], idx]
    flip = bool(settings["flip"])
    scale = uniform(1 - settings["crop"], 1.0) if settings["crop"] > 0 else torch.ones(b)
    sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    if settings["crop"] > 0 or flip:
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = scale * sign
        theta[:, 1, 1] = scale
        theta[:, 0, 2] = (1 - scale) * (2 * torch.rand(b, generator=gen) - 1)
        theta[:, 1, 2] = (1 - scale) * (2 * torch.rand(b, generator=gen) - 1)
        planes = x.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)
        grid = F.affine_grid(theta, (b, t * c, h, w), align_corners=False)
        planes = F.grid_sample(
            planes, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        x = planes.reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2)
    if settings["contrast"] > 0 or settings["brightness"] > 0:
        shape = (b, 1, 1, 1, 1)
        gain = uniform(1 - settings["contrast"], 1 + settings["contrast"]).view(shape)
        shift = uniform(-settings["brightness"], settings["brightness"]).view(shape) * 255
        drift = uniform(-settings["brightness"], settings["brightness"]).view(shape) * 255
        ramp = (torch.linspace(-0.5, 0.5, t) if t > 1 else torch.zeros(1)).view(1, t, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        x = ((x - mean) * gain + mean + shift + drift * ramp).clamp(0, 255)
    return x


def _optimizer(model, p):
    import torch

    if p["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"]
        )
    return torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])


def evaluate_loss(model, x, y, criterion, device: str, batch_size: int = 64) -> tuple[float, float]:
    """Mean loss (sequence logits, the training criterion) and accuracy of clips x."""
    import torch

    model.eval()
    total = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            logits = model(xb)
            total += criterion(logits, yb).item() * len(xb)
            correct += (logits.argmax(1) == yb).sum().item()
    return total / len(x), correct / len(x)


def fit(model, x, y, params: dict, seed: int, device: str, x_val=None, y_val=None) -> pd.DataFrame:
    """Train `model` on tensors x (N, T, ...) and y (N,); return the per-epoch history.

    With a validation split (x_val, y_val), the weights of the epoch with the lowest
    validation loss are restored at the end, and training stops after `patience` epochs
    without improvement (0: never stops early). Pixel clips are augmented (see
    `augment_pixels`) unless `augment` is false.
    """
    import torch
    from tqdm import tqdm

    p = {**DEFAULTS, **params}
    if p["balance"] not in ("weighted", "sampler", "none"):
        raise ConfigError(f"balance must be weighted, sampler or none, got {p['balance']!r}")
    model.fit_normalization(x)
    model.to(device)
    counts_weights = class_weights(y.numpy(), model.n_classes)
    if model.closed_form:
        t0 = time.perf_counter()
        sample_weight = (
            counts_weights[y.numpy()] if p["balance"] != "none" else np.ones(len(y), np.float32)
        )
        result = model.fit_closed_form(x, y, sample_weight)
        row = {"phase": "fit", "epoch": 1, "lr": float("nan"), **result}
        if x_val is not None and len(x_val):
            criterion = torch.nn.CrossEntropyLoss()
            row["val_loss"], row["val_acc"] = evaluate_loss(model, x_val, y_val, criterion, device)
        row.update(best=True, seconds=time.perf_counter() - t0)
        return pd.DataFrame([row])

    loss_weights = torch.from_numpy(
        counts_weights if p["balance"] == "weighted" else np.ones(model.n_classes, np.float32)
    ).to(device)
    criterion = torch.nn.CrossEntropyLoss(weight=loss_weights)
    opt = _optimizer(model, p)
    schedule = (
        torch.optim.lr_scheduler.StepLR(opt, p["lr_step"], p["lr_gamma"]) if p["lr_step"] else None
    )
    settings = augment_settings(p["augment"]) if model.takes == catalog.PIXELS else None
    gen = torch.Generator().manual_seed(seed)
    draw = torch.from_numpy(counts_weights[y.numpy()]).double()
    validate = x_val is not None and len(x_val) > 0
    best_loss, best_state, best_epoch, waited = math.inf, None, 0, 0
    rows = []
    bar = tqdm(
        range(1, p["epochs"] + 1), desc=f"{type(model).__module__.split('.')[-1]}", disable=None
    )
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if p["balance"] == "sampler":  # classes drawn equally often, with replacement
            order = torch.multinomial(draw, len(x), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(x), generator=gen)
        total = correct = 0.0
        for i in range(0, len(x), p["batch_size"]):
            idx = order[i : i + p["batch_size"]]
            xb, yb = x[idx], y[idx]
            if settings is not None:
                xb = augment_pixels(xb, gen, settings)
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
        row = {
            "phase": "fit",
            "epoch": epoch,
            "lr": lr,
            "loss": total / len(x),
            "train_acc": correct / len(x),
        }
        if validate:
            row["val_loss"], row["val_acc"] = evaluate_loss(model, x_val, y_val, criterion, device)
            if row["val_loss"] < best_loss:
                best_loss, best_epoch, waited = row["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row.get('val_loss', float('nan')):.3f}")
        log.info(
            "epoch %d: loss %.4f, train acc %.3f%s",
            epoch,
            row["loss"],
            row["train_acc"],
            f", val loss {row['val_loss']:.4f}, val acc {row['val_acc']:.3f}" if validate else "",
        )
        if validate and p["patience"] and waited >= p["patience"]:
            log.info("no improvement for %d epochs: stopping at epoch %d", waited, epoch)
            break
    history = pd.DataFrame(rows)
    if best_state is not None:
        model.load_state_dict(best_state)
        log.info("kept epoch %d (validation loss %.4f)", best_epoch, best_loss)
    history["best"] = history.epoch == (best_epoch if validate else history.epoch.max())
    return history


def predict(model, x, device: str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, K) for clips x (N, T, ...)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu())
    return torch.cat(out).numpy()


def onthefly(model, reader, test: pd.DataFrame, probs: np.ndarray, length: int, device: str):
    """Video predictions from the first 10 %, 20 %, … 100 % of every test video.

    With f·n frames seen, the video's prediction averages the clips that end by then (the
    same clips and probabilities as the full evaluation, so f = 1 is the video-level result).
    Before the first clip ends, the frames seen so far form the clip: unpadded for models that
    take any length, else padded by repeating the last frame as short videos are.
    Returns (rows of video, fraction, frames_seen, probs) as a list of dicts and an array.
    """
    import torch

    from pipeline.store import pad_clip

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


def versions() -> dict[str, str]:
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion object: weights_only loads plain str
        "numpy": str(np.__version__),
        "scikit-learn": str(sklearn.__version__),
    }


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
    ap.add_argument(
        "--normalize",
        choices=("none", "per_subject"),
        default="none",
        help="per_subject: standardise features per subject (transductive protocol)",
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
    ap.add_argument("--out-onthefly", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    seed = args.seed + args.fold
    seed_everything(seed)
    device = resolve_device(args.device)
    params = parse_params(args.params)
    p = {**DEFAULTS, **params}
    folds = read_csv(args.folds)
    classes = sorted(folds.label.unique())
    to_index = {c: i for i, c in enumerate(classes)}
    clips = read_csv(args.clips)
    train, test = split(clips, folds, args.fold)
    closed_form = catalog.load(catalog.MODELS, args.model, "model", "Model").closed_form
    held = inner_split(train, 0.0 if closed_form else p["val_subjects"], seed)
    if args.normalize == "per_subject":
        videos = clips[clips.video_id.isin(folds.video_id)].drop_duplicates("video_id")
        reader = SubjectNormalizedReader(
            args.features, dict(zip(videos.video_id, videos.subject, strict=True))
        )
    else:
        reader = ClipReader(args.features)
    x_all = torch.from_numpy(reader.clips(train, args.clip_length))
    y_all = torch.tensor([to_index[c] for c in train.label])
    x_test = torch.from_numpy(reader.clips(test, args.clip_length))
    mask = torch.from_numpy(held.copy())
    x_fit, y_fit, x_val, y_val = x_all[~mask], y_all[~mask], x_all[mask], y_all[mask]
    log.info(
        "fold %d: %d training clips (%d subjects) + %d validation clips (subjects %s), "
        "%d test clips, input %s, device %s",
        args.fold,
        len(x_fit),
        train.subject[~held].nunique(),
        len(x_val),
        ", ".join(sorted(train.subject[held].unique())) or "none",
        len(test),
        tuple(x_all.shape[1:]),
        device,
    )

    model = build_model(args.model, len(classes), tuple(x_all.shape[1:]), params)
    history = fit(model, x_fit, y_fit, params, seed, device, x_val, y_val)
    best_epoch = int(history.epoch[history.best].iloc[0])
    if p["refit"] and held.any():
        log.info("refit on all %d training clips for %d epochs", len(x_all), best_epoch)
        seed_everything(seed)
        model = build_model(args.model, len(classes), tuple(x_all.shape[1:]), params)
        again = fit(model, x_all, y_all, {**params, "epochs": best_epoch}, seed, device)
        history = pd.concat([history, again.assign(phase="refit")], ignore_index=True)
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
        "input_shape": list(x_all.shape[1:]),
        "clip_length": args.clip_length,
        "normalize": args.normalize,
        "preprocessing": parse_params(args.preprocessing),
        "seed": seed,
        "train_subjects": sorted(map(str, train.subject[~held].unique())),
        "val_subjects": sorted(map(str, train.subject[held].unique())),
        "refit": bool(p["refit"] and held.any()),
        "best_epoch": best_epoch,
        "epochs_run": int(history.epoch[history.phase == "fit"].max()),
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
