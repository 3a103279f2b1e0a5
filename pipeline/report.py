"""The `report` stage: one self-contained `report.html` (styles and images inline, no network).

Every string that comes from the dataset (file names, ids, labels, reasons) is HTML-escaped.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from importlib import metadata
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


def paired(m: dict, base: dict, key: str = "war") -> tuple[float, str]:
    """Mean per-fold difference (video level) and wins/ties/losses over the same folds."""
    ours = {f["fold"]: f[key] for f in m["video"]["folds"]}
    theirs = {f["fold"]: f[key] for f in base["video"]["folds"]}
    common = sorted(set(ours) & set(theirs))
    diff = [ours[k] - theirs[k] for k in common]
    wins = sum(d > 1e-12 for d in diff)
    losses = sum(d < -1e-12 for d in diff)
    return float(np.mean(diff)) if diff else float(
        "nan"
    ), f"{wins}/{len(common) - wins - losses}/{losses}"


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


def zoo_section(metrics: list[dict]) -> str:
    """Against the baseline, on-the-fly curves and training curves."""
    html = []
    rows = []
    for m in metrics:
        if m["model"] == BASELINE:
            continue
        base = baseline_for(m, metrics)
        if base is None:
            rows.append(
                [
                    escape(m["model"]),
                    escape(m["backbone"]),
                    "",
                    "",
                    "",
                    "",
                    "<span class='muted'>no meanpool on this backbone</span>",
                ]
            )
            continue
        d_war, record = paired(m, base, "war")
        d_uar, _ = paired(m, base, "uar")
        rows.append(
            [
                escape(m["model"]),
                escape(m["backbone"]),
                fmt(m["video"]["mean"]["war"]),
                fmt(base["video"]["mean"]["war"]),
                f"{100 * d_war:+.1f}",
                f"{100 * d_uar:+.1f}",
                record,
            ]
        )
    if any(m["model"] == BASELINE for m in metrics) and rows:
        html += [
            "<h2>Against the baseline</h2>",
            f"<p>Every deep model against <code>{BASELINE}</code> (logistic regression on "
            "time-averaged features) on the same backbone and the same folds, video level. "
            "Δ = mean over folds of the per-fold difference, in percentage points; "
            "folds = better / equal / worse. With few folds these are descriptive, not a test.</p>",
            table_html(
                ["model", "backbone", "WAR", "meanpool WAR", "Δ WAR", "Δ UAR", "folds +/=/−"],
                rows,
                left=2,
            ),
        ]
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


def results_section(metrics: list[dict]) -> str:
    """The comparison table (best mean in bold) and the confusion matrices."""
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
    html = [
        "<h2>Results</h2>",
        "<p>Subject-independent cross-validation: mean ± std over folds, in %. WAR = accuracy; "
        "UAR = mean per-class recall. Chance: WAR of always answering the most frequent class "
        f"({fmt(chance['war'])} %), UAR 1/K ({fmt(chance['uar'])} %).</p>",
        table_html(header, rows, left=2),
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
    html += [
        "<h3>Per fold (video level)</h3>",
        table_html(["model", "backbone", "fold", "videos", "WAR", "UAR"], fold_rows, left=2),
    ]
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


def collect_skipped(dataset_skipped: str, stage_files: dict[str, list[str]]) -> pd.DataFrame:
    frames = [read_csv(dataset_skipped)[["video_id", "stage", "reason"]]]
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


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "snakemake",
        "facenet-pytorch",
        "dlib-bin",
        "numpy",
        "scikit-learn",
        "h5py",
        "av",
        "opencv-python-headless",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def render(
    metrics: list[dict],
    videos: pd.DataFrame,
    folds: pd.DataFrame,
    skipped: pd.DataFrame,
    face_files: list[str],
    config: dict,
    aligned_files: list[str] = (),
    montage_dirs: list[str] = (),
) -> str:
    ver = versions()
    run = [
        "<h2>What was run</h2>",
        f"<p>Generated {escape(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}; config hash <code>{digest(config)}</code>.</p>",
        table_html(["package", "version"], [[escape(k), escape(v)] for k, v in ver.items()]),
        "<details><summary>Configuration</summary><pre>"
        + escape(json.dumps(config, indent=2, sort_keys=True))
        + "</pre></details>",
    ]
    body = "\n".join(
        [
            "<h1>Dynamic facial expression recognition: cross-validated results</h1>",
            f"<p class='muted'>{len(metrics)} model × backbone combinations, {metrics[0]['n_folds']} subject-independent folds.</p>",
            results_section(metrics),
            zoo_section(metrics),
            confusion_section(metrics),
            dataset_section(videos, folds, skipped),
            face_section(face_files, aligned_files, montage_dirs),
            *run,
        ]
    )
    return f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>FER pipeline report</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Render results/report.html.")
    ap.add_argument("--metrics", nargs="+", required=True)
    ap.add_argument("--videos", required=True)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--dataset-skipped", required=True)
    ap.add_argument("--faces", nargs="+", required=True)
    ap.add_argument("--aligned", nargs="+", required=True)
    ap.add_argument("--montages", nargs="*", default=[], help="montage folders of frontalize")
    ap.add_argument("--config", default="{}", help="the whole config as JSON, shown in the report")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    metrics = []
    for path in args.metrics:
        with open(path, encoding="utf-8") as f:
            metrics.append(json.load(f))
    skipped = collect_skipped(
        args.dataset_skipped, {"detect_faces": args.faces, "frontalize": args.aligned}
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
    )
    write_text_atomic(args.out, html)
    log.info("wrote %s (%d bytes)", args.out, len(html))


if __name__ == "__main__":
    run_main(main)
