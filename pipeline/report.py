"""The `report` stage: one self-contained `report.html` (styles and images inline, no network).

Every string that comes from the dataset (file names, ids, labels, reasons) is HTML-escaped.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.common import (
    digest,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    versions,
    write_csv_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.muted{color:#666;font-size:.9em}.best{font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}figcaption{font-size:.9em;color:#444}
.montages figure{margin:0 0 .6em 0}.montages img{image-rendering:pixelated;max-width:100%}
code{background:#f5f5f5;padding:0 .2em}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.5em .8em}
"""


def fmt(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def table_html(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """rows hold already-escaped HTML cells; the first `left` columns are left-aligned."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png(fig, alt: str = "") -> str:
    """An <img> with the figure inlined as base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def confusion_figure(cm: list[list[int]], classes: list[str], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.3, 3.0))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.6 else "black",
            )
    return png(fig, alt=title)


BASELINE = "meanpool"


def baseline_for(m: dict, metrics: list[dict]) -> dict | None:
    """The meanpool result on the same backbone (else none) to compare a model with."""
    for other in metrics:
        if other["model"] == BASELINE and other["backbone"] == m["backbone"]:
            return other
    return None


def onthefly_figure(metrics: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for m in metrics:
        curve = m.get("onthefly")
        if not curve:
            continue
        x = 100 * np.asarray(curve["fractions"])
        y = 100 * np.asarray(curve["war"]["mean"])
        style = "--" if m["model"] == BASELINE else "-"
        ax.plot(x, y, style, marker="o", markersize=3, label=f"{m['model']} / {m['backbone']}")
    ax.axhline(100 * metrics[0]["chance"]["war"], color="grey", lw=1, ls=":", label="chance")
    ax.set_xlabel("% of the video seen")
    ax.set_ylabel("video WAR (%)")
    ax.set_xlim(5, 105)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig, alt="on-the-fly accuracy: video WAR against the fraction of the video seen")


def training_figure(m: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for k, fold in enumerate(m["training"]):
        c = fold["curve"]
        color = f"C{k % 10}"
        ax.plot(c["epoch"], c["loss"], color=color, lw=1, label=f"fold {fold['fold']}")
        if any(v is not None for v in c.get("val_loss", [])):
            val = [np.nan if v is None else v for v in c["val_loss"]]
            ax.plot(c["epoch"], val, color=color, lw=1, ls="--")
            if fold["best_epoch"] is not None:
                ax.plot(
                    fold["best_epoch"],
                    val[c["epoch"].index(fold["best_epoch"])],
                    "o",
                    color=color,
                    ms=4,
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{m['model']} / {m['backbone']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return png(fig, alt=f"training curves of {m['model']} / {m['backbone']}")


def comparison_section(metrics: list[dict]) -> str:
    """Each model against the baseline on its backbone, and the best result against the rest:
    paired over the same folds, with the Wilcoxon signed-rank p and its caveat."""
    from pipeline.compare import caveat, compare, same_folds

    def cells(c_war: dict, c_uar: dict) -> list[str]:
        return [
            f"{100 * c_war['mean_diff']:+.1f}",
            f"{100 * c_uar['mean_diff']:+.1f}",
            f"{c_war['better']}/{c_war['equal']}/{c_war['worse']}",
            f"{c_war['wilcoxon_p']:.3f}",
        ]

    html = []
    rows = []
    for m in metrics:
        if m["model"] == BASELINE:
            continue
        base = baseline_for(m, metrics)
        if base is None or not same_folds(m, base):
            rows.append(
                [
                    escape(m["model"]),
                    escape(m["backbone"]),
                    fmt(m["video"]["mean"]["war"]),
                    "",
                    "",
                    "",
                    "",
                    "<span class='muted'>no meanpool on this backbone and folds</span>",
                ]
            )
            continue
        rows.append(
            [
                escape(m["model"]),
                escape(m["backbone"]),
                fmt(m["video"]["mean"]["war"]),
                fmt(base["video"]["mean"]["war"]),
                *cells(compare(m, base, "war"), compare(m, base, "uar")),
            ]
        )
    n_folds = metrics[0]["n_folds"]
    header = ["Δ WAR", "Δ UAR", "folds +/=/−", "Wilcoxon p (WAR)"]
    protocol = metrics[0].get("protocol", "inductive")
    suffix = "" if protocol == "inductive" else f" ({escape(protocol)})"
    if any(m["model"] == BASELINE for m in metrics) and rows:
        html += [
            f"<h2>Against the baseline{suffix}</h2>",
            f"<p>Every model against <code>{BASELINE}</code> (logistic regression on "
            "time-averaged features) on the same backbone and the same folds, video level. "
            "Δ = mean over folds of the per-fold difference, in percentage points; "
            "folds = better / equal / worse; p = two-sided Wilcoxon signed-rank test of the "
            f"per-fold WAR differences. {escape(caveat(n_folds))}</p>",
            table_html(["model", "backbone", "WAR", "meanpool WAR", *header], rows, left=2),
        ]
    best = max(metrics, key=lambda m: m["video"]["mean"]["war"])
    others = [m for m in metrics if m is not best and same_folds(m, best)]
    if others:
        rows = [
            [
                escape(m["model"]),
                escape(m["backbone"]),
                fmt(m["video"]["mean"]["war"]),
                *cells(compare(best, m, "war"), compare(best, m, "uar")),
            ]
            for m in others
        ]
        html += [
            f"<h3>The best against the rest{suffix}</h3>",
            f"<p>{escape(best['model'])} / {escape(best['backbone'])} (highest mean video WAR, "
            f"{fmt(best['video']['mean']['war'])} %) against every other result of the same "
            "protocol and folds; Δ = best − other. Picking the best and then testing it is "
            "itself optimistic. Every pair is in <code>results/comparison.csv</code>.</p>",
            table_html(["model", "backbone", "WAR", *header], rows, left=2),
        ]
    return "\n".join(html)


def zoo_section(metrics: list[dict]) -> str:
    """On-the-fly curves and training curves."""
    html = []
    if any(m.get("onthefly") for m in metrics):
        html += [
            "<h2>On-the-fly accuracy</h2>",
            "<p>Video WAR when only the first 10 %, 20 %, … of every test video has been seen: "
            "the clips that ended by then are averaged (before the first clip ends, the frames "
            "seen so far form the clip). At 100 % this is the video-level result above.</p>",
            f"<figure>{onthefly_figure(metrics)}</figure>",
        ]
    curves = [m for m in metrics if m.get("training") and m["model"] != BASELINE]
    if curves:
        html.append(
            "<h2>Training curves</h2><p class='muted'>Training loss (solid) and inner-validation "
            "loss (dashed; held-out training subjects) per fold; dots mark the epoch kept.</p>"
            "<div class='grid'>"
        )
        html += [f"<figure>{training_figure(m)}</figure>" for m in curves]
        html.append("</div>")
        stops = [
            [
                escape(m["model"]),
                escape(m["backbone"]),
                ", ".join(
                    f"{f['best_epoch']}/{f['epochs_run']}" + (" (refit)" if f["refit"] else "")
                    for f in m["training"]
                ),
            ]
            for m in curves
        ]
        html.append(table_html(["model", "backbone", "kept / run epochs per fold"], stops, left=3))
    return "\n".join(html)


PROTOCOLS = {
    "inductive": "",
    "transductive": (
        "Transductive protocol: features were standardised per subject with the statistics of "
        "that subject's own clips, the test subjects' unlabelled test clips included "
        "(<code>cv.normalize: per_subject</code>). These numbers are not comparable with "
        "inductive results, where nothing about a test subject is seen before testing."
    ),
}


def by_protocol(metrics: list[dict]) -> list[tuple[str, list[dict]]]:
    """Results grouped by protocol (inductive first); never mixed in one table."""
    groups: dict[str, list[dict]] = {}
    for m in metrics:
        groups.setdefault(m.get("protocol", "inductive"), []).append(m)
    return sorted(groups.items(), key=lambda kv: (kv[0] != "inductive", kv[0]))


def results_table(metrics: list[dict]) -> str:
    """The comparison table (best mean in bold) with the chance row."""
    keys = [
        ("clip", "war"),
        ("clip", "uar"),
        ("video", "war"),
        ("video", "uar"),
        ("video", "macro_f1"),
    ]
    best = {k: max(m[k[0]]["mean"][k[1]] for m in metrics) for k in keys}
    rows = []
    for m in metrics:
        cells = [escape(m["model"]), escape(m["backbone"]), str(m["n_folds"])]
        for level, key in keys:
            text = fmt(m[level]["mean"][key], m[level]["std"][key])
            cells.append(
                f'<span class="best">{text}</span>'
                if m[level]["mean"][key] == best[(level, key)]
                else text
            )
        rows.append(cells)
    chance = metrics[0]["chance"]
    rows.append(
        [
            '<span class="muted">chance</span>',
            "",
            "",
            fmt(chance["war"]),
            fmt(chance["uar"]),
            fmt(chance["war"]),
            fmt(chance["uar"]),
            "",
        ]
    )
    header = [
        "model",
        "backbone",
        "folds",
        "clip WAR",
        "clip UAR",
        "video WAR",
        "video UAR",
        "video macro-F1",
    ]
    return table_html(header, rows, left=2)


def recall_table(metrics: list[dict]) -> str:
    """Per-class recall, video level, mean ± std over the folds where the class is tested."""
    classes = metrics[0]["classes"]
    rows = []
    for m in metrics:
        r = m["video"].get("recall")
        if not r:
            continue
        rows.append(
            [escape(m["model"]), escape(m["backbone"])]
            + [
                "–" if mu is None else fmt(mu, sd)
                for mu, sd in zip(r["mean"], r["std"], strict=True)
            ]
        )
    if not rows:
        return ""
    header = ["model", "backbone", *(escape(c) for c in classes)]
    return "<h3>Per-class recall (video level)</h3>" + table_html(header, rows, left=2)


def folds_figure(metrics: list[dict]) -> str:
    """Video WAR of every fold (dots, one colour per fold) and the mean (bar) per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.5, 0.75 * len(metrics) + 1.5), 3.6))
    folds = sorted({f["fold"] for m in metrics for f in m["video"]["folds"]})
    colour = {k: f"C{i % 10}" for i, k in enumerate(folds)}
    for x, m in enumerate(metrics):
        wars = [(f["fold"], 100 * f["war"]) for f in m["video"]["folds"]]
        offsets = np.linspace(-0.25, 0.25, len(wars)) if len(wars) > 1 else [0.0]
        for dx, (fold, war) in zip(offsets, wars, strict=True):
            ax.plot(x + dx, war, "o", ms=4, color=colour[fold], alpha=0.85)
        ax.hlines(100 * m["video"]["mean"]["war"], x - 0.35, x + 0.35, color="black", lw=2)
    ax.axhline(100 * metrics[0]["chance"]["war"], color="grey", lw=1, ls=":")
    ax.set_xticks(
        range(len(metrics)),
        [f"{m['model']}\n{m['backbone']}" for m in metrics],
        rotation=45,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("video WAR per fold (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    if len(folds) <= 12:
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=colour[k], label=f"fold {k}") for k in folds
        ]
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig, alt="video WAR of every fold per model and backbone")


def results_section(metrics: list[dict]) -> str:
    """Per protocol: the comparison table, per-class recall and the per-fold chart."""
    chance = metrics[0]["chance"]
    html = [
        "<h2>Results</h2>",
        "<p>Subject-independent cross-validation: mean ± std over folds, in %. WAR = accuracy; "
        "UAR = mean per-class recall; best in bold. Chance: WAR of always answering the most "
        f"frequent class ({fmt(chance['war'])} %), UAR 1/K ({fmt(chance['uar'])} %).</p>",
    ]
    groups = by_protocol(metrics)
    for protocol, group in groups:
        if len(groups) > 1 or protocol != "inductive":
            html.append(f"<h3>{escape(protocol.capitalize())} protocol</h3>")
        if PROTOCOLS.get(protocol):
            html.append(f"<p class='warn'>{PROTOCOLS[protocol]}</p>")
        html += [
            results_table(group),
            recall_table(group),
            "<h3>Per fold</h3><p class='muted'>Video WAR of each test fold (dots) and the mean "
            "(bar); the dotted line is chance. The spread is what the ± above summarises.</p>",
            f"<figure>{folds_figure(group)}</figure>",
        ]
    return "\n".join(html)


def confusion_section(metrics: list[dict]) -> str:
    """Video-level confusion matrices in a grid; clip-level ones folded away."""
    html = [
        "<h2>Confusion matrices</h2><p class='muted'>Pooled over the test folds; colour = "
        "row-normalised recall, numbers = counts.</p>"
    ]
    for level in ("video", "clip"):
        figures = []
        for m in metrics:
            title = f"{m['model']} / {m['backbone']} ({level} level)"
            cm = m[level]["pooled"]["confusion"]
            figures.append(f"<figure>{confusion_figure(cm, m['classes'], title)}</figure>")
        grid = "<div class='grid'>" + "".join(figures) + "</div>"
        html.append(
            grid if level == "video" else f"<details><summary>Clip level</summary>{grid}</details>"
        )
    fold_rows = []
    for m in metrics:
        for f in m["video"]["folds"]:
            fold_rows.append(
                [
                    escape(m["model"]),
                    escape(m["backbone"]),
                    str(f["fold"]),
                    str(f["n"]),
                    fmt(f["war"]),
                    fmt(f["uar"]),
                ]
            )
    html.append(
        "<details><summary>Per fold (video level)</summary>"
        + table_html(["model", "backbone", "fold", "videos", "WAR", "UAR"], fold_rows, left=2)
        + "</details>"
    )
    return "\n".join(html)


def dataset_section(videos: pd.DataFrame, folds: pd.DataFrame, skipped: pd.DataFrame) -> str:
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
        "<h3>Skipped videos</h3>",
    ]
    if skipped.empty:
        html.append("<p>None.</p>")
    else:
        srows = [
            [escape(str(r.video_id)), escape(str(r.stage)), escape(str(r.reason))]
            for r in skipped.itertuples()
        ]
        html.append(table_html(["video", "stage", "reason"], srows, left=3))
    return "\n".join(html)


def face_section(
    face_files: list[str], aligned_files: list[str], montage_dirs: list[str], shown: int = 12
) -> str:
    """Face QC: detection accounting, other faces, head pose spread, quality, montages."""
    n = valid = detected = filled = multi = others = cropped = 0
    for path in face_files:
        with h5py.File(path, "r") as f:
            for vid in f:
                g = f[vid]
                v = g["valid"][:]
                n += len(v)
                valid += int(v.sum())
                gap = g["filled"][:] if "filled" in g else np.zeros_like(v)
                detected += int((g["detected"][:] & v & ~gap).sum())  # filled frames ran it too
                filled += int(gap.sum())
                multi += int((g["n_faces"][:] > 1).sum())
                others += len(g["others"]) if "others" in g else 0
                cropped += bool(g.attrs.get("cropped", False))
    pose = {k: [] for k in ("yaw", "pitch", "roll", "quality")}
    per_video: list[tuple[float, str]] = []
    for path in aligned_files:
        with h5py.File(path, "r") as f:
            for vid in f:
                for key in pose:
                    if key in f[vid]:
                        pose[key].append(f[vid][key][:])
                if "quality" in f[vid]:
                    per_video.append((float(np.mean(f[vid]["quality"][:])), vid))
    rows = []
    for key, parts in pose.items():
        values = np.concatenate(parts) if parts else np.zeros(0)
        values = values[np.isfinite(values)]
        if len(values):
            p5, p50, p95 = np.percentile(values, [5, 50, 95])
            unit = "" if key == "quality" else " °"
            rows.append([escape(key), *(f"{x:.2f}{unit}" for x in (p5, p50, p95))])
    html = [
        "<h2>Faces</h2>",
        f"<p>A face was found in {valid} of {n} frames ({100 * valid / max(n, 1):.1f} %): "
        f"{detected} by the detector, {valid - detected - filled} interpolated between "
        f"agreeing detections, {filled} across short misses. {multi} frames showed more than "
        f"one face: the primary subject was followed and {others} other detections recorded "
        f"apart. {cropped} videos were taken as face crops.</p>",
    ]
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
        per_video.sort()
        worst = [vid for _, vid in per_video if vid in files][: shown // 2]
        rest = [vid for vid in sorted(files) if vid not in worst][: shown - len(worst)]
        quality = {vid: q for q, vid in per_video}
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


STAGE_ORDER = [
    "demo_data",
    "adapt_dataset",
    "dataset",
    "detect_faces",
    "frontalize",
    "window_clips",
    "folds",
    "extract_features",
    "feature_index",
    "train_backbone",
    "train",
    "evaluate",
]


BENCH_COLUMNS = ["stage", "seconds", "max_rss", "cpu_time"]


def read_benchmarks(folder: str | Path) -> pd.DataFrame:
    """One row per Snakemake `benchmark:` file: stage (its first folder), seconds, RSS, CPU."""
    rows = []
    folder = Path(folder)
    for path in sorted(folder.rglob("*.tsv")):
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
                "stage": path.relative_to(folder).parts[0].removesuffix(".tsv"),
                "seconds": float(last["s"]),
                "max_rss": pd.to_numeric(last.get("max_rss"), errors="coerce"),
                "cpu_time": pd.to_numeric(last.get("cpu_time"), errors="coerce"),
            }
        )
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


def benchmark_section(bench: pd.DataFrame) -> str:
    """Per-stage run time and peak memory from the benchmark files."""
    html = ["<h2>Run time and memory</h2>"]
    if bench.empty:
        html.append("<p>No benchmark files found (benchmarks/).</p>")
        return "\n".join(html)
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    rows = []
    groups = sorted(bench.groupby("stage"), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    for stage, g in groups:
        rows.append(
            [
                escape(str(stage)),
                str(len(g)),
                f"{g.seconds.sum():.1f}",
                f"{g.seconds.max():.1f}",
                f"{g.cpu_time.sum():.1f}" if g.cpu_time.notna().any() else "–",
                f"{g.max_rss.max():.0f}" if g.max_rss.notna().any() else "–",
            ]
        )
    html += [
        "<p class='muted'>From each job's Snakemake benchmark file (benchmarks/), latest run. "
        "Wall seconds of jobs that ran side by side add up to more than the elapsed time; "
        "with more jobs than cores they are also inflated. Peak memory = the largest resident "
        "set of one job of the stage, in MB (the number to ask a cluster for).</p>",
        table_html(
            ["stage", "jobs", "wall s (sum)", "longest job s", "CPU s (sum)", "peak RSS MB"],
            rows,
        ),
    ]
    return "\n".join(html)


def collect_skipped(
    dataset_skipped: str, stage_files: dict[str, list[str]], extra: Sequence[str] = ()
) -> pd.DataFrame:
    frames = [read_csv(p)[["video_id", "stage", "reason"]] for p in (dataset_skipped, *extra)]
    for stage, files in stage_files.items():
        for path in files:
            with h5py.File(path, "r") as f:
                items = json.loads(f.attrs.get("skipped", "{}")).items()
            frames.append(
                pd.DataFrame(
                    [{"video_id": v, "stage": stage, "reason": r} for v, r in items],
                    columns=["video_id", "stage", "reason"],
                )
            )
    return pd.concat(frames, ignore_index=True)


def render(
    metrics: list[dict],
    videos: pd.DataFrame,
    folds: pd.DataFrame,
    skipped: pd.DataFrame,
    face_files: list[str],
    config: dict,
    aligned_files: list[str] = (),
    montage_dirs: list[str] = (),
    bench: pd.DataFrame | None = None,
) -> str:
    ver = versions()
    hashes = sorted({m["config_hash"] for m in metrics if "config_hash" in m})
    run = [
        "<h2>What was run</h2>",
        f"<p>Generated {escape(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}; config hash "
        f"<code>{digest(config)}</code> (each metrics file carries the hash of the sections "
        f"it depends on: {', '.join(f'<code>{escape(h)}</code>' for h in hashes) or 'none'}). "
        "The command: <code>snakemake --cores N results/report.html</code> with this "
        "configuration.</p>",
        table_html(["package", "version"], [[escape(k), escape(v)] for k, v in ver.items()]),
        "<details><summary>Configuration</summary><pre>"
        + escape(json.dumps(config, indent=2, sort_keys=True))
        + "</pre></details>",
    ]
    protocols = by_protocol(metrics)
    banner = ""
    if any(p != "inductive" for p, _ in protocols):
        banner = f"<p class='warn'>{PROTOCOLS['transductive']}</p>"
    cv = config.get("cv") or {}
    method = {
        "kfold": f"{metrics[0]['n_folds']} subject-grouped, label-stratified folds",
        "loso": f"leave-one-subject-out ({metrics[0]['n_folds']} folds)",
        "file": f"the official split in {escape(str(cv.get('file')))} ({metrics[0]['n_folds']} folds)",
    }.get(cv.get("method", "kfold"), f"{metrics[0]['n_folds']} folds")
    body = "\n".join(
        [
            "<h1>Dynamic facial expression recognition: cross-validated results</h1>",
            f"<p class='muted'>{len(metrics)} model × backbone combinations; {method}; no "
            "subject is in the training and the test side of any fold.</p>",
            banner,
            results_section(metrics),
            *(comparison_section(group) for _, group in protocols),
            confusion_section(metrics),
            zoo_section(metrics),
            dataset_section(videos, folds, skipped),
            face_section(face_files, aligned_files, montage_dirs),
            benchmark_section(bench if bench is not None else pd.DataFrame(columns=BENCH_COLUMNS)),
            *run,
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>FER pipeline report</title><style>{CSS}</style></head><body>\n{body}\n"
        "</body></html>\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Render results/report.html.")
    ap.add_argument("--metrics", nargs="+", required=True)
    ap.add_argument("--videos", required=True)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--dataset-skipped", required=True)
    ap.add_argument("--faces", nargs="+", required=True)
    ap.add_argument("--aligned", nargs="+", required=True)
    ap.add_argument("--montages", nargs="*", default=[], help="montage folders of frontalize")
    ap.add_argument("--folds-skipped", nargs="*", default=[], help="videos left out by folds")
    ap.add_argument("--benchmarks", default="benchmarks", help="Snakemake benchmark folder")
    ap.add_argument("--config", default="{}", help="the whole config as JSON, shown in the report")
    ap.add_argument("--out", required=True)
    ap.add_argument("--comparison", help="comparison.csv: every paired comparison of results")
    ap.add_argument("--skipped-out", help="qc/skipped.csv: every skipped video, stage, reason")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    metrics = []
    for path in args.metrics:
        with open(path, encoding="utf-8") as f:
            metrics.append(json.load(f))
    skipped = collect_skipped(
        args.dataset_skipped,
        {"detect_faces": args.faces, "frontalize": args.aligned},
        args.folds_skipped,
    )
    html = render(
        metrics,
        read_csv(args.videos),
        read_csv(args.folds),
        skipped,
        args.faces,
        parse_params(args.config),
        args.aligned,
        args.montages,
        read_benchmarks(args.benchmarks),
    )
    if args.skipped_out:
        write_csv_atomic(args.skipped_out, skipped)
    if args.comparison:
        from pipeline.compare import all_pairs

        write_csv_atomic(args.comparison, all_pairs(metrics))
    write_text_atomic(args.out, html)
    log.info("wrote %s (%d bytes)", args.out, len(html))


if __name__ == "__main__":
    run_main(main)
