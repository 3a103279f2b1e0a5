"""QC summaries for the report: small files computed from the stages' outputs.

Three rules, one subcommand each, so that the report reads only small tables:

    python -m pipeline.qc faces    --faces F.. --aligned A.. --out qc/faces.json
    python -m pipeline.qc skipped  --dataset-skipped D --folds-skipped S --faces F..
                                   --aligned A.. --out qc/skipped.csv
    python -m pipeline.qc runtime  --benchmarks B.. --root logs/runtime --out qc/runtime.csv

`faces.json`: frame accounting of the face stage (frames, with a face, detected,
interpolated, filled across misses, with several faces, other detections, videos taken as
crops), the 5th/50th/95th percentiles of yaw, pitch, roll and quality over all frames with a
face, and each video's mean quality (the report shows the worst montages first).
`skipped.csv`: every video a stage left out (video_id, stage, reason).
`runtime.csv`: per stage, from the Snakemake benchmark files of its jobs: jobs, wall seconds
(sum and longest job), CPU seconds, peak resident memory of one job (MB).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import read_csv, run_main, setup_logging, write_csv_atomic, write_json_atomic
from pipeline.store import open_h5, read_skipped

log = logging.getLogger(__name__)

POSE = ("yaw", "pitch", "roll", "quality")
SKIPPED_COLUMNS = ["video_id", "stage", "reason"]
RUNTIME_COLUMNS = ["stage", "jobs", "wall_s", "longest_s", "cpu_s", "peak_rss_mb"]
STAGE_ORDER = (
    "demo_data",
    "adapt_dataset",
    "dataset",
    "detect_faces",
    "frontalize",
    "window_clips",
    "folds",
    "extract_features",
    "train_backbone",
    "feature_index",
    "train",
    "evaluate",
    "compare",
    "qc_faces",
    "qc_skipped",
)


def face_summary(face_files: Sequence[str], aligned_files: Sequence[str]) -> dict:
    """Detection accounting, pose/quality percentiles and per-video mean quality."""
    counts = dict.fromkeys(
        ("frames", "valid", "detected", "interpolated", "filled", "multi", "others", "cropped"), 0
    )
    for path in face_files:
        with open_h5(path) as f:
            for vid in f:
                g = f[vid]
                v = g["valid"][:]
                gap = g["filled"][:] if "filled" in g else np.zeros_like(v)
                detected = int((g["detected"][:] & v & ~gap).sum())  # filled frames ran it too
                counts["frames"] += len(v)
                counts["valid"] += int(v.sum())
                counts["detected"] += detected
                counts["filled"] += int(gap.sum())
                counts["interpolated"] += int(v.sum()) - detected - int(gap.sum())
                counts["multi"] += int((g["n_faces"][:] > 1).sum())
                counts["others"] += len(g["others"]) if "others" in g else 0
                counts["cropped"] += bool(g.attrs.get("cropped", False))
    values: dict[str, list[np.ndarray]] = {k: [] for k in POSE}
    quality: dict[str, float] = {}
    for path in aligned_files:
        with open_h5(path) as f:
            for vid in f:
                for key in POSE:
                    if key in f[vid]:
                        values[key].append(f[vid][key][:])
                if "quality" in f[vid]:
                    quality[vid] = float(np.mean(f[vid]["quality"][:]))
    pose = {}
    for key, parts in values.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        v = v[np.isfinite(v)]
        pose[key] = [float(x) for x in np.percentile(v, [5, 50, 95])] if len(v) else None
    return {"counts": counts, "pose": pose, "quality": dict(sorted(quality.items()))}


def collect_skipped(
    dataset_skipped: str, stage_files: dict[str, Sequence[str]], extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Every skipped video: the dataset and folds tables, and the per-shard `skipped` attrs."""
    frames = [read_csv(p)[SKIPPED_COLUMNS] for p in (dataset_skipped, *extra)]
    for stage, files in stage_files.items():
        for path in files:
            items = read_skipped(path).items()
            frames.append(
                pd.DataFrame(
                    [{"video_id": v, "stage": stage, "reason": r} for v, r in items],
                    columns=SKIPPED_COLUMNS,
                )
            )
    return pd.concat(frames, ignore_index=True)


def stage_of(path: Path, root: Path) -> str:
    """A benchmark file's stage: its first folder below `root` (or its name, at the top)."""
    return path.relative_to(root).parts[0].removesuffix(".tsv")


def runtime_table(files: Sequence[str], root: str | Path) -> pd.DataFrame:
    """Per stage: jobs, wall seconds (sum, longest), CPU seconds, peak RSS (MB)."""
    root = Path(root)
    rows = []
    for path in map(Path, files):
        try:
            table = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            log.warning("%s: not a benchmark table, left out", path)
            continue
        if table.empty or "s" not in table:
            continue
        last = table.iloc[-1]
        rows.append(
            {
                "stage": stage_of(path, root),
                "seconds": float(last["s"]),
                "max_rss": pd.to_numeric(last.get("max_rss"), errors="coerce"),
                "cpu_time": pd.to_numeric(last.get("cpu_time"), errors="coerce"),
            }
        )
    jobs = pd.DataFrame(rows, columns=["stage", "seconds", "max_rss", "cpu_time"])
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    out = []
    for stage, g in sorted(jobs.groupby("stage"), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        out.append(
            {
                "stage": stage,
                "jobs": len(g),
                "wall_s": round(g.seconds.sum(), 2),
                "longest_s": round(g.seconds.max(), 2),
                "cpu_s": round(g.cpu_time.sum(), 2) if g.cpu_time.notna().any() else np.nan,
                "peak_rss_mb": g.max_rss.max() if g.max_rss.notna().any() else np.nan,
            }
        )
    return pd.DataFrame(out, columns=RUNTIME_COLUMNS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="QC summaries for the report.")
    sub = ap.add_subparsers(dest="command", required=True)
    faces = sub.add_parser("faces", help="face detection, pose and quality summary (JSON)")
    faces.add_argument("--faces", nargs="+", required=True, help="faces/shard-*.h5")
    faces.add_argument("--aligned", nargs="+", required=True, help="aligned/shard-*.h5")
    faces.add_argument("--out", required=True)
    skipped = sub.add_parser("skipped", help="every skipped video, stage and reason (CSV)")
    skipped.add_argument("--dataset-skipped", required=True)
    skipped.add_argument("--folds-skipped", nargs="*", default=[])
    skipped.add_argument("--faces", nargs="+", required=True)
    skipped.add_argument("--aligned", nargs="+", required=True)
    skipped.add_argument("--out", required=True)
    runtime = sub.add_parser("runtime", help="run time and memory per stage (CSV)")
    runtime.add_argument("--benchmarks", nargs="*", default=[], help="benchmark .tsv files")
    runtime.add_argument("--root", default="logs/runtime", help="their folder (stage = subfolder)")
    runtime.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if args.command == "faces":
        summary = face_summary(args.faces, args.aligned)
        write_json_atomic(args.out, summary)
        log.info("faces: %s", summary["counts"])
    elif args.command == "skipped":
        table = collect_skipped(
            args.dataset_skipped,
            {"detect_faces": args.faces, "frontalize": args.aligned},
            args.folds_skipped,
        )
        write_csv_atomic(args.out, table)
        log.info("%d skipped videos", len(table))
    else:
        table = runtime_table(args.benchmarks, args.root)
        write_csv_atomic(args.out, table)
        log.info("run time of %d stages", len(table))


if __name__ == "__main__":
    run_main(main)
