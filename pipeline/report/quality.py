"""Report sections about the data and the run: dataset, features, faces, run time, config.

Every number comes from a small file a rule wrote: qc/audit.csv, videos.csv and folds.csv,
the feature indexes, qc/skipped.csv, qc/faces.json, qc/runtime.csv, and the montage PNGs of
frontalize.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

from pipeline.common import digest, versions
from pipeline.qc import POSE
from pipeline.report.html import table_html


def audit_section(audit: pd.DataFrame | None) -> str:
    """The dataset audit's findings (qc/audit.csv), errors first; a run that reached the
    report had no error, and warnings only where dataset.strict is false."""
    if audit is None:
        return ""
    html = ["<h2>Dataset audit</h2>"]
    if audit.empty:
        html.append(
            "<p>No findings: labels, duplicates, classes, lengths, rates and sizes are "
            "as expected (results/qc/audit.csv).</p>"
        )
        return "\n".join(html)
    counts = audit.severity.value_counts()
    html.append(
        f"<p>{int(counts.get('warning', 0))} warnings and {int(counts.get('info', 0))} notes "
        "on the videos as a set, before any face job (results/qc/audit.csv, with every row "
        "involved; docs/data.md, Your own data).</p>"
    )
    rows = [
        [
            escape(r.severity),
            escape(r.check),
            str(len(r.rows.split(";")) if r.rows else 0),
            escape(r.message),
        ]
        for r in audit.itertuples()
    ]
    html.append(table_html(["severity", "check", "rows", "finding"], rows, left=4))
    return "\n".join(html)


def dataset_section(
    videos: pd.DataFrame, folds: pd.DataFrame, skipped: pd.DataFrame, index: pd.DataFrame
) -> str:
    """Class balance, folds, the features extracted, and every skipped video."""
    balance = videos.groupby("label").agg(
        videos=("video_id", "size"), subjects=("subject", "nunique")
    )
    rows = [[escape(str(label)), str(r.videos), str(r.subjects)] for label, r in balance.iterrows()]
    per_fold = folds.groupby("fold").agg(
        videos=("video_id", "size"), subjects=("subject", "nunique")
    )
    fold_rows = [[str(k), str(r.videos), str(r.subjects)] for k, r in per_fold.iterrows()]
    html = [
        "<h2>Dataset</h2>",
        f"<p>{len(videos)} decodable videos from {videos.subject.nunique()} subjects, "
        f"{int(videos.n_frames.sum())} frames; {len(skipped)} skipped.</p>",
        table_html(["label", "videos", "subjects"], rows),
        "<h3>Folds</h3>",
        table_html(["fold", "videos", "subjects"], fold_rows),
    ]
    if not index.empty:
        feature_rows = [
            [
                escape(str(name)),
                escape(str(g.kind.iloc[0])),
                str(g.file.nunique()),
                str(g.video_id.nunique()),
                str(int(g.n_frames.sum())),
                escape(" | ".join(sorted(set(map(str, g["shape"]))))),
                escape(" | ".join(sorted(set(map(str, g.dtype))))),
            ]
            for name, g in index.groupby("backbone", sort=True)
        ]
        html += [
            "<h3>Features</h3>",
            "<p class='muted'>From each backbone's index (results/features/*/index.csv); a "
            "per-fold backbone has one file set per fold, so its frames count once per fold."
            "</p>",
            table_html(
                ["backbone", "kind", "files", "videos", "frames", "per frame", "dtype"],
                feature_rows,
                left=2,
            ),
        ]
    html.append("<h3>Skipped videos</h3>")
    if skipped.empty:
        html.append("<p>None.</p>")
    else:
        srows = [
            [escape(str(r.video_id)), escape(str(r.stage)), escape(str(r.reason))]
            for r in skipped.itertuples()
        ]
        html.append(table_html(["video", "stage", "reason"], srows, left=3))
    return "\n".join(html)


def face_section(summary: dict, montage_dirs: list[str] = (), shown: int = 12) -> str:
    """Face QC from qc/faces.json: detection accounting, pose and quality spread, montages."""
    c = summary["counts"]
    n, valid = c["frames"], c["valid"]
    html = [
        "<h2>Faces</h2>",
        f"<p>A face was found in {valid} of {n} frames ({100 * valid / max(n, 1):.1f} %): "
        f"{c['detected']} by the detector, {c['interpolated']} interpolated between "
        f"agreeing detections, {c['filled']} across short misses. {c['multi']} frames showed "
        f"more than one face: the primary subject was followed and {c['others']} other "
        f"detections recorded apart. {c['cropped']} videos were taken as face crops.</p>",
    ]
    rows = []
    for key in POSE:  # in this order (the JSON's keys are sorted)
        spread = summary["pose"].get(key)
        if spread is not None:
            unit = "" if key == "quality" else " °"
            rows.append([escape(key), *(f"{x:.2f}{unit}" for x in spread)])
    if rows:
        html += [
            "<h3>Head pose and quality</h3>",
            "<p class='muted'>Over all frames with a face. Yaw &gt; 0: turned toward image "
            "right; pitch &gt; 0: looking up; roll &gt; 0: tilted clockwise. Quality: detector "
            "confidence × visible fraction of the face (1 = confident and frontal).</p>",
            table_html(["", "5th pct", "median", "95th pct"], rows),
        ]
    files = {Path(p).stem: Path(p) for d in montage_dirs for p in Path(d).glob("*.png")}
    if files:
        quality = summary["quality"]
        by_quality = sorted((q, vid) for vid, q in quality.items())
        worst = [vid for _, vid in by_quality if vid in files][: shown // 2]
        rest = [vid for vid in sorted(files) if vid not in worst][: shown - len(worst)]
        items = []
        for vid in worst + rest:
            data = base64.b64encode(files[vid].read_bytes()).decode()
            label = escape(vid) + (f" · quality {quality[vid]:.2f}" if vid in quality else "")
            items.append(
                f"<figure><img alt='{escape(vid)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{label}</figcaption></figure>"
            )
        html += [
            "<h3>Aligned faces</h3>",
            f"<p class='muted'>8 evenly spaced aligned frames per video; the {len(worst)} "
            f"videos of lowest mean quality first, then others ({len(items)} of {len(files)} "
            "shown; all are in results/qc/montages/). A red frame: no face in that frame.</p>",
            "<div class='montages'>" + "".join(items) + "</div>",
        ]
    return "\n".join(html)


def runtime_section(runtime: pd.DataFrame) -> str:
    """Per-stage run time and peak memory from qc/runtime.csv."""
    html = ["<h2>Run time and memory</h2>"]
    if runtime.empty:
        html.append("<p>No benchmark files were found (logs/runtime/).</p>")
        return "\n".join(html)

    def number(value, digits: int) -> str:
        return "–" if pd.isna(value) else f"{value:.{digits}f}"

    rows = [
        [
            escape(str(r.stage)),
            str(int(r.jobs)),
            number(r.wall_s, 1),
            number(r.longest_s, 1),
            number(r.cpu_s, 1),
            number(r.peak_rss_mb, 0),
        ]
        for r in runtime.itertuples()
    ]
    html += [
        "<p class='muted'>From each job's Snakemake benchmark file (logs/runtime/), latest run; "
        "the report's own job is not included (it is timed while this page is written). Wall "
        "seconds of jobs that ran side by side add up to more than the elapsed time; with more "
        "jobs than cores they are also inflated. Peak memory = the largest resident set of "
        "one job of the stage, in MB (the number to ask a cluster for).</p>",
        table_html(
            ["stage", "jobs", "wall s (sum)", "longest job s", "CPU s (sum)", "peak RSS MB"],
            rows,
        ),
    ]
    return "\n".join(html)


def run_section(metrics: list[dict], config: dict) -> str:
    """When, with which configuration (and its hashes) and which package versions."""
    hashes = sorted({m["config_hash"] for m in metrics if "config_hash" in m})
    return "\n".join(
        [
            "<h2>What was run</h2>",
            f"<p>Generated {escape(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}; config "
            f"hash <code>{digest(config)}</code> (each metrics file carries the hash of the "
            "sections it depends on: "
            f"{', '.join(f'<code>{escape(h)}</code>' for h in hashes) or 'none'}). "
            "The command: <code>snakemake --cores N results/report.html</code> with this "
            "configuration.</p>",
            table_html(
                ["package", "version"], [[escape(k), escape(v)] for k, v in versions().items()]
            ),
            "<details><summary>Configuration</summary><pre>"
            + escape(json.dumps(config, indent=2, sort_keys=True))
            + "</pre></details>",
        ]
    )
