"""The `evaluate` stage: cross-validated metrics of one model × backbone.

From the test-clip predictions of every fold it computes, per fold and as mean ± std over
folds, at clip level and at video level (clip probabilities averaged per video):

    war       weighted average recall = accuracy
    uar       unweighted average recall = mean per-class recall over classes present
    macro_f1  F1 averaged over classes present
    confusion counts, rows = true class, columns = predicted class (summed over folds)
    interval  the pooled WAR, UAR and macro-F1 over every test video (or clip) of every fold
              with its 95 % interval: a hierarchical bootstrap over the test subjects and
              their videos (`pipeline.intervals`)

Chance levels: UAR 1/K; WAR of always predicting the most frequent class.

Also, from each fold's `onthefly.csv`, video-level WAR and UAR (mean ± std over folds) as a
function of the fraction of every video seen (the on-the-fly curve), and from each fold's
`history.csv` the training curves and the epoch model selection kept.

`predictions` lists every test video's fold, subject, label and predicted class, so that two
results can be compared video by video (`pipeline.compare`).

Output `metrics/{model}_{backbone}.json` (keys sorted, same input → same bytes) with its
provenance: the config sections the result depends on, their hash (`config_hash`), the
software versions, and the protocol: `inductive`, `transductive` (`normalize: per_subject`)
or `calibrated` (`normalize: calibrated`: each video standardised with its subject's other
videos; inductive for the test clip).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.common import (
    digest,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    versions,
    write_json_atomic,
)
from pipeline.intervals import interval

log = logging.getLogger(__name__)


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """war, uar, macro_f1, per-class recall and the confusion matrix of integer labels."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    present = support > 0
    recall = np.where(present, tp / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    denom = precision + np.nan_to_num(recall)
    f1 = np.where(
        denom > 0, 2 * precision * np.nan_to_num(recall) / np.where(denom > 0, denom, 1), 0.0
    )
    return {
        "war": float(tp.sum() / max(cm.sum(), 1)),
        "uar": float(np.nanmean(recall[present])) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "recall": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": cm.tolist(),
        "n": int(cm.sum()),
    }


def video_level(pred: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Average clip probabilities per video; one row per video with label, fold and pred."""
    cols = [f"p_{c}" for c in classes]
    grouped = pred.groupby("video_id", sort=True)
    videos = grouped[cols].mean()
    meta = grouped[["label", "fold", "subject"]].first()
    out = meta.join(videos)
    out["pred"] = [classes[i] for i in out[cols].to_numpy().argmax(1)]
    return out.reset_index()


def summarize(table: pd.DataFrame, classes: list[str]) -> dict:
    """Per-fold scores, their mean and std, and the pooled confusion matrix."""
    index = {c: i for i, c in enumerate(classes)}
    folds = []
    for fold, rows in table.groupby("fold", sort=True):
        s = scores(rows.label.map(index).to_numpy(), rows.pred.map(index).to_numpy(), len(classes))
        folds.append({"fold": int(fold), **s})
    keys = ("war", "uar", "macro_f1")
    pooled = scores(
        table.label.map(index).to_numpy(), table.pred.map(index).to_numpy(), len(classes)
    )
    # per-class recall over the folds where the class is present
    recall = np.array(
        [[np.nan if r is None else r for r in f["recall"]] for f in folds], dtype=float
    )
    seen = ~np.isnan(recall)
    recall_mean = [
        float(np.mean(recall[seen[:, c], c])) if seen[:, c].any() else None
        for c in range(len(classes))
    ]
    recall_std = [
        float(np.std(recall[seen[:, c], c])) if seen[:, c].any() else None
        for c in range(len(classes))
    ]
    return {
        "folds": folds,
        "mean": {k: float(np.mean([f[k] for f in folds])) for k in keys},
        "std": {k: float(np.std([f[k] for f in folds])) for k in keys},
        "recall": {"mean": recall_mean, "std": recall_std},
        "pooled": pooled,
        "interval": interval(table, classes),
    }


def onthefly_curve(frames: list[pd.DataFrame], classes: list[str]) -> dict:
    """Video-level WAR/UAR per fraction of the video seen, mean and std over folds."""
    table = pd.concat(frames, ignore_index=True)
    index = {c: i for i, c in enumerate(classes)}
    out = {"fractions": [], "war": {"mean": [], "std": []}, "uar": {"mean": [], "std": []}}
    for fraction, rows in table.groupby("fraction", sort=True):
        per_fold = [
            scores(r.label.map(index).to_numpy(), r.pred.map(index).to_numpy(), len(classes))
            for _, r in rows.groupby("fold", sort=True)
        ]
        out["fractions"].append(float(fraction))
        for key in ("war", "uar"):
            values = [f[key] for f in per_fold]
            out[key]["mean"].append(float(np.mean(values)))
            out[key]["std"].append(float(np.std(values)))
    return out


def _clean(values) -> list:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def training_summary(histories: dict[int, pd.DataFrame]) -> list[dict]:
    """Per fold: the kept epoch, epochs run, and the curves (NaN → null).

    Run times stay in history.csv: metrics must be the same bytes for the same config and data."""
    out = []
    for fold, h in sorted(histories.items()):
        fit = h[h.phase == "fit"] if "phase" in h else h
        best = fit.epoch[fit.best] if "best" in fit else fit.epoch.tail(1)
        curve = {"epoch": fit.epoch.astype(int).tolist()}
        for key in ("loss", "train_acc", "val_loss", "val_acc"):
            if key in fit:
                curve[key] = _clean(fit[key].astype(float).tolist())
        out.append(
            {
                "fold": fold,
                "best_epoch": int(best.iloc[0]) if len(best) else None,
                "epochs_run": int(fit.epoch.max()),
                "refit": bool("phase" in h and (h.phase == "refit").any()),
                "curve": curve,
            }
        )
    return out


def fold_of(path: str) -> int:
    match = re.search(r"fold(\d+)", str(path))
    if not match:
        raise ValueError(f"{path}: no fold number (foldK) in the path")
    return int(match.group(1))


def evaluate(
    predictions: list[pd.DataFrame],
    model: str,
    backbone: str,
    onthefly: list[pd.DataFrame] = (),
    histories: dict[int, pd.DataFrame] | None = None,
) -> dict:
    pred = pd.concat(predictions, ignore_index=True)
    classes = [c[2:] for c in pred.columns if c.startswith("p_")]
    unknown = set(pred.label) - set(classes)
    if unknown:
        raise ValueError(f"labels without a probability column: {sorted(unknown)}")
    videos = video_level(pred, classes)
    counts = videos.label.value_counts()
    return {
        "model": model,
        "backbone": backbone,
        "classes": classes,
        "n_folds": int(pred.fold.nunique()),
        "n_videos": len(videos),
        "n_clips": len(pred),
        "clip": summarize(pred, classes),
        "video": summarize(videos, classes),
        "chance": {"uar": 1.0 / len(classes), "war": float(counts.max() / counts.sum())},
        "onthefly": onthefly_curve(list(onthefly), classes) if len(onthefly) else None,
        "training": training_summary(histories or {}),
        "predictions": [
            {k: (int(v) if k == "fold" else str(v)) for k, v in row.items()}
            for row in videos[PREDICTION_COLUMNS].to_dict("records")
        ],
    }


PREDICTION_COLUMNS = ["video_id", "subject", "fold", "label", "pred"]


def provenance(config: dict) -> dict:
    """What a metrics file came from: config sections, their hash, versions, protocol."""
    normalize = (config.get("model") or {}).get("normalize") or (config.get("cv") or {}).get(
        "normalize", "none"
    )
    return {
        "provenance": config,
        "config_hash": digest(config),
        "versions": versions(),
        "protocol": PROTOCOL[normalize],
        "normalize": normalize,
    }


# cv.normalize (or a model's normalize) → the protocol its results are reported under
PROTOCOL = {"none": "inductive", "per_subject": "transductive", "calibrated": "calibrated"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Cross-validated metrics of one model × backbone.")
    ap.add_argument("--predictions", nargs="+", required=True, help="predictions.csv of every fold")
    ap.add_argument("--onthefly", nargs="*", default=[], help="onthefly.csv of every fold")
    ap.add_argument("--histories", nargs="*", default=[], help="history.csv of every fold")
    ap.add_argument("--model", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--params", default="{}", help="provenance stored with the metrics (JSON)")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    metrics = evaluate(
        [read_csv(p) for p in args.predictions],
        args.model,
        args.backbone,
        [read_csv(p) for p in args.onthefly],
        {fold_of(p): read_csv(p) for p in args.histories},
    )
    metrics.update(provenance(parse_params(args.params)))
    write_json_atomic(args.out, metrics)
    for level in ("clip", "video"):
        m, s, ci = metrics[level]["mean"], metrics[level]["std"], metrics[level]["interval"]
        log.info(
            "%s level: WAR %.3f ± %.3f (pooled %.3f, 95 %% interval %.3f-%.3f), UAR %.3f ± %.3f",
            level,
            m["war"],
            s["war"],
            ci["war"]["pooled"],
            ci["war"]["low"],
            ci["war"]["high"],
            m["uar"],
            s["uar"],
        )


if __name__ == "__main__":
    run_main(main)
