"""`python -m pipeline.report`: render results/report.html from the files the rules wrote."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import pandas as pd

from pipeline.common import parse_params, read_csv, run_main, setup_logging, write_text_atomic
from pipeline.report import render

log = logging.getLogger("pipeline.report")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__)
    ap.add_argument("--metrics", nargs="+", required=True, help="metrics/*.json")
    ap.add_argument("--videos", required=True, help="dataset/videos.csv")
    ap.add_argument("--audit", help="qc/audit.csv")
    ap.add_argument("--folds", required=True, help="folds.csv")
    ap.add_argument("--skipped", required=True, help="qc/skipped.csv")
    ap.add_argument("--comparison", required=True, help="comparison.csv")
    ap.add_argument("--faces", required=True, help="qc/faces.json")
    ap.add_argument("--runtime", required=True, help="qc/runtime.csv")
    ap.add_argument("--index", nargs="*", default=[], help="features/*/index.csv")
    ap.add_argument("--montages", nargs="*", default=[], help="montage folders of frontalize")
    ap.add_argument("--targets", nargs="*", default=[], help="qc/targets.csv (task regress)")
    ap.add_argument("--curves", nargs="*", default=[], help="curves/*.json (curve.subjects)")
    ap.add_argument("--config", default="{}", help="the whole config as JSON, shown in the report")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    index = [read_csv(p) for p in args.index]
    html = render(
        [read_json(p) for p in args.metrics],
        videos=read_csv(args.videos),
        audit=read_csv(args.audit) if args.audit else None,
        folds=read_csv(args.folds),
        skipped=read_csv(args.skipped),
        pairs=read_csv(args.comparison),
        faces=read_json(args.faces),
        runtime=read_csv(args.runtime),
        index=pd.concat(index, ignore_index=True) if index else pd.DataFrame(),
        config=parse_params(args.config),
        montage_dirs=args.montages,
        targets=read_csv(args.targets[0]) if args.targets else None,
        curves=[read_json(p) for p in args.curves],
    )
    write_text_atomic(args.out, html)
    log.info("wrote %s (%d bytes)", args.out, len(html))


if __name__ == "__main__":
    run_main(main)
