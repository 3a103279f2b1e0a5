"""`python -m pipeline.predict`: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.common import ConfigError, VideoError, run_main, setup_logging
from pipeline.predict.batch import expand_inputs, run_batch
from pipeline.predict.predictor import Predictor
from pipeline.predict.scoring import describe, mapping_hint, parse_mapping, score, write

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Emotion probabilities per window and per frame of new videos.",
    )
    ap.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files, frame folders, folders of videos, or CSV sheets (column `path`)",
    )
    ap.add_argument(
        "--model",
        required=True,
        help="a trained model's folder: results/models/MODEL/BACKBONE (every fold, averaged) "
        "or one fold's folder",
    )
    ap.add_argument(
        "--out",
        required=True,
        help="folder for summary.csv (one row per video) and one subfolder per video "
        "(windows.csv, frames.csv, timeline.png, summary.json); a labelled sheet adds "
        "metrics.json and confusion.csv",
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads (default: %(default)s); with 2 or more, several videos run in two "
        "stages: one thread detects the faces of the next video while the other predicts",
    )
    ap.add_argument(
        "--calibrate",
        nargs="+",
        default=[],
        metavar="VIDEO",
        help="models trained with normalize: calibrated: unlabelled video(s) of the same person "
        "to calibrate on (not the video itself)",
    )
    ap.add_argument(
        "--retry-failed",
        action="store_true",
        help="predict again the videos that failed in an earlier run into the same --out",
    )
    ap.add_argument(
        "--reference",
        metavar="PHOTO",
        help="a photo of the person to follow when several people are filmed (a sheet's "
        "`reference` column sets it per video)",
    )
    ap.add_argument(
        "--map-label",
        nargs="+",
        default=[],
        metavar="SHEET=MODEL",
        help="a labelled sheet's label as the model's class (angry=anger): labelled videos are "
        "scored (metrics.json); a label that is no class of the model counts as an error",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    mapping = parse_mapping(args.map_label)
    items = expand_inputs(args.videos)
    labels = {mapping.get(x[2], x[2]) for x in items if x[2] is not None}
    if mapping and not labels:
        raise ConfigError("--map-label maps the labels of a sheet; no input has a label column")
    with Predictor(args.model, args.device, args.threads, args.calibrate) as predictor:
        classes = predictor.classes if predictor.task == "classify" else []
        unknown = sorted(labels - set(classes)) if classes else []
        if unknown:  # said before a long batch, not only after it
            log.warning(
                "the sheet's labels %s are not classes of the model (%s): their videos will "
                "count as errors; %s",
                ", ".join(map(repr, unknown)),
                ", ".join(classes),
                mapping_hint(unknown, classes),
            )
        table = run_batch(
            args.videos,
            args.model,
            args.out,
            retry_failed=args.retry_failed,
            progress=False if args.no_progress else None,
            predictor=predictor,
            reference=args.reference,
            items=items,
        )
    counts = {s: int((table.status == s).sum()) for s in ("done", "skipped", "failed")}
    report = {"videos": len(table), **counts, "out": args.out}
    metrics = score(table, classes, mapping) if classes else None
    if metrics is not None:
        write(args.out, metrics)
        log.info("%s; wrote %s", describe(metrics), Path(args.out) / "metrics.json")
        report.update({k: round(metrics[k]["pooled"], 4) for k in ("war", "uar") if k in metrics})
    if len(table) == 1 and counts["failed"] == 0:
        row = table.iloc[0]
        log.info("%s: %s", row.path, row.prediction or "mean over frames")
    print(json.dumps(report))
    if counts["failed"]:
        reasons = "; ".join(table[table.status == "failed"].reason.head(3))
        raise VideoError(
            f"{counts['failed']} of {len(table)} videos failed ({reasons}"
            + (" …" if counts["failed"] > 3 else "")
            + f"); every reason is in {Path(args.out) / 'summary.csv'}, and the same command "
            "with --retry-failed tries them again"
        )


if __name__ == "__main__":
    run_main(main)
