"""The `evaluate` stage of a regress run: how well one model × backbone follows the labels.

From every fold's frame-wise predictions (`predictions.csv` of `pipeline.regression.train`),
per dimension, on the labelled frames only (`pipeline.continuous`):

    frame    per fold, CCC / Pearson r / RMSE pooled over the fold's test frames; mean and
             std over folds; and pooled over every fold's frames
    video    per fold, the mean over its test videos of each video's own CCC / r / RMSE;
             mean and std over folds
    videos   every test video's scores (video_id, subject, fold, dimension, ccc, pearson,
             rmse, n)
    samples  for the report: per fold, the test video with the most labelled frames, its
             true and predicted curves (at most 400 points, evenly thinned)

The per-fold keys are `ccc_<dim>`, `pearson_<dim>`, `rmse_<dim>`, so `pipeline.compare` pairs
models fold by fold as it does WAR (the baseline: `ridge`).

Output `metrics/{model}_{backbone}.json` (keys sorted: same input → same bytes).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.common import parse_params, read_csv, run_main, setup_logging, write_json_atomic
from pipeline.continuous import per_video, scores
from pipeline.evaluate import fold_of, provenance

log = logging.getLogger(__name__)

KEYS = ("ccc", "pearson", "rmse")
SAMPLE_POINTS = 400


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def dimensions_of(table: pd.DataFrame) -> list[str]:
    return [c[len("pred_") :] for c in table.columns if c.startswith("pred_")]


def fold_scores(rows: pd.DataFrame, dims: list[str]) -> tuple[dict, dict, list[dict]]:
    """(frame-level scores of one fold, video-level means, every video's rows)."""
    frame = {"fold": int(rows.fold.iloc[0]), "n_videos": int(rows.video_id.nunique())}
    frame["n"] = int(np.isfinite(rows[[f"true_{d}" for d in dims]].to_numpy()).any(1).sum())
    video = {"fold": frame["fold"], "n": frame["n_videos"]}
    videos, _ = per_video(
        rows.video_id.to_numpy(),
        rows[[f"true_{d}" for d in dims]].to_numpy(),
        rows[[f"pred_{d}" for d in dims]].to_numpy(),
        dims,
    )
    subject = dict(zip(rows.video_id, rows.subject.astype(str), strict=False))
    for r in videos:
        r.update(subject=subject[r["video_id"]], fold=frame["fold"])
    for d in dims:
        pooled = scores(rows[f"true_{d}"], rows[f"pred_{d}"])
        mine = [r for r in videos if r["dimension"] == d]
        for key in KEYS:
            frame[f"{key}_{d}"] = _num(pooled[key])
            values = [r[key] for r in mine if np.isfinite(r[key])]
            video[f"{key}_{d}"] = _num(float(np.mean(values))) if values else None
    return frame, video, videos


def over_folds(folds: list[dict], dims: list[str]) -> tuple[dict, dict]:
    """Mean and std over folds of every per-fold key (folds where it is defined)."""
    mean, std = {}, {}
    for d in dims:
        for key in KEYS:
            values = [f[f"{key}_{d}"] for f in folds if f[f"{key}_{d}"] is not None]
            mean[f"{key}_{d}"] = _num(float(np.mean(values))) if values else None
            std[f"{key}_{d}"] = _num(float(np.std(values))) if values else None
    return mean, std


def sample_curves(rows: pd.DataFrame, dims: list[str]) -> dict:
    """The fold's test video with the most labelled frames: its curves, thinned."""
    labelled = rows.groupby("video_id")[[f"true_{d}" for d in dims]].count().sum(1)
    vid = str(labelled.sort_index().idxmax())
    mine = rows[rows.video_id == vid].sort_values("frame")
    step = max(1, -(-len(mine) // SAMPLE_POINTS))
    mine = mine.iloc[::step]
    curves = {"frame": mine.frame.astype(int).tolist()}
    for d in dims:
        curves[f"true_{d}"] = [_num(v) for v in mine[f"true_{d}"]]
        curves[f"pred_{d}"] = [_num(round(float(v), 5)) for v in mine[f"pred_{d}"]]
    return {"fold": int(rows.fold.iloc[0]), "video_id": vid, **curves}


def training_summary(histories: dict[int, pd.DataFrame]) -> list[dict]:
    """Per fold: the kept epoch, epochs run and the loss curves (run times stay out)."""
    out = []
    for fold, h in sorted(histories.items()):
        fit = h[h.phase == "fit"]
        curve = {"epoch": fit.epoch.astype(int).tolist()}
        for key in ("loss", "val_loss", "val_ccc"):
            if key in fit:
                curve[key] = [_num(v) for v in fit[key].astype(float)]
        best = fit.epoch[fit.best]
        out.append(
            {
                "fold": fold,
                "best_epoch": int(best.iloc[0]) if len(best) else None,
                "epochs_run": int(fit.epoch.max()),
                "refit": bool((h.phase == "refit").any()),
                "curve": curve,
            }
        )
    return out


def evaluate(
    predictions: list[pd.DataFrame],
    model: str,
    backbone: str,
    histories: dict[int, pd.DataFrame] | None = None,
) -> dict:
    """The metrics of one model × backbone (see the module docstring)."""
    table = pd.concat(predictions, ignore_index=True)
    dims = dimensions_of(table)
    frame_folds, video_folds, videos, samples = [], [], [], []
    for _, rows in table.groupby("fold", sort=True):
        frame, video, mine = fold_scores(rows, dims)
        frame_folds.append(frame)
        video_folds.append(video)
        videos += mine
        samples.append(sample_curves(rows, dims))
    frame_mean, frame_std = over_folds(frame_folds, dims)
    video_mean, video_std = over_folds(video_folds, dims)
    pooled = {
        d: {k: _num(v) for k, v in scores(table[f"true_{d}"], table[f"pred_{d}"]).items()}
        for d in dims
    }
    for r in videos:
        for key in KEYS:
            r[key] = _num(r[key])
    return {
        "task": "regress",
        "model": model,
        "backbone": backbone,
        "dimensions": dims,
        "n_folds": len(frame_folds),
        "n_videos": int(table.video_id.nunique()),
        "n_frames": len(table),
        "frame": {"folds": frame_folds, "mean": frame_mean, "std": frame_std, "pooled": pooled},
        "video": {"folds": video_folds, "mean": video_mean, "std": video_std},
        "videos": videos,
        "samples": samples,
        "training": training_summary(histories or {}),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="CCC, r and RMSE of one model × backbone.")
    ap.add_argument("--predictions", nargs="+", required=True, help="predictions.csv per fold")
    ap.add_argument("--histories", nargs="*", default=[], help="history.csv per fold")
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
        {fold_of(p): read_csv(p) for p in args.histories},
    )
    metrics.update(provenance(parse_params(args.params)))
    write_json_atomic(args.out, metrics)
    for d in metrics["dimensions"]:
        m, s = metrics["frame"]["mean"], metrics["frame"]["std"]
        log.info(
            "%s: CCC %.3f ± %.3f over %d folds",
            d,
            m[f"ccc_{d}"] or float("nan"),
            s[f"ccc_{d}"] or float("nan"),
            metrics["n_folds"],
        )


if __name__ == "__main__":
    run_main(main)
