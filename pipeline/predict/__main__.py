"""`python -m pipeline.predict`: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.common import (
    run_main,
    setup_logging,
)
from pipeline.predict.batch import is_frame_folder, run_batch
from pipeline.predict.predictor import run

log = logging.getLogger(__name__)


def single(inputs: Sequence[str]) -> bool:
    """One video file or frame folder: its four files go straight into --out."""
    if len(inputs) != 1:
        return False
    path = Path(inputs[0])
    return (path.is_file() and path.suffix.lower() != ".csv") or is_frame_folder(path)


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
        help="folder for windows.csv, frames.csv, timeline.png, summary.json (several videos: "
        "one subfolder per video and summary.csv)",
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
        help="several videos: predict again the videos that failed in an earlier run",
    )
    ap.add_argument(
        "--reference",
        metavar="PHOTO",
        help="a photo of the person to follow when several people are filmed (a sheet's "
        "`reference` column sets it per video)",
    )
    ap.add_argument("--no-progress", action="store_true", help="several videos: no progress bar")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if not single(args.videos):
        table = run_batch(
            args.videos,
            args.model,
            args.out,
            args.device,
            args.threads,
            args.calibrate,
            args.retry_failed,
            False if args.no_progress else None,
            reference=args.reference,
        )
        print(
            json.dumps(
                {
                    "videos": len(table),
                    **{s: int((table.status == s).sum()) for s in ("done", "skipped", "failed")},
                    "out": args.out,
                }
            )
        )
        return
    summary = run(
        args.videos[0],
        args.model,
        args.out,
        args.device,
        args.threads,
        args.calibrate,
        args.reference,
    )
    values = summary.get("probabilities") or summary.get("means") or {}
    log.info(
        "%s: %s (%s) from %d windows; wrote %s",
        args.videos[0],
        summary["prediction"] or "mean over frames",
        ", ".join(f"{c} {p:.2f}" for c, p in values.items()),
        summary["windows"],
        args.out,
    )
    print(json.dumps({"prediction": summary["prediction"], "out": args.out}))


if __name__ == "__main__":
    run_main(main)
