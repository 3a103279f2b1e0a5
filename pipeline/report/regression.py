"""Report sections of a regress run: CCC / r / RMSE per model, per fold, against the ridge
baseline, predicted against true curves of sample test videos, the labels' coverage.

Every number comes from the metrics files (`pipeline.regression.evaluate`), comparison.csv
(`compare`) and qc/targets.csv (`targets`).
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from pipeline.compare import caveat, oriented, same_folds
from pipeline.report.figures import pyplot
from pipeline.report.html import png, table_html

BASELINE = "ridge"


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pm(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{mean:.3f} ± {_f(std)}"


def results_section(metrics: list[dict]) -> str:
    """One row per model × backbone: per dimension the frame-level CCC (mean ± std over
    folds), r and RMSE, and the mean of the per-video CCCs."""
    dims = metrics[0]["dimensions"]
    header = ["model", "backbone"]
    for d in dims:
        header += [f"CCC {escape(d)}", f"r {escape(d)}", f"RMSE {escape(d)}", "video CCC"]
    best = {d: max((m["frame"]["mean"][f"ccc_{d}"] or -9) for m in metrics) for d in dims}
    rows = []
    for m in sorted(metrics, key=lambda m: (m["model"] == BASELINE, m["model"], m["backbone"])):
        row = [
            escape(m["model"]) + (" (baseline)" if m["model"] == BASELINE else ""),
            escape(m["backbone"]),
        ]
        fm, fs, vm = m["frame"]["mean"], m["frame"]["std"], m["video"]["mean"]
        for d in dims:
            ccc = _pm(fm[f"ccc_{d}"], fs[f"ccc_{d}"])
            if fm[f"ccc_{d}"] is not None and fm[f"ccc_{d}"] == best[d]:
                ccc = f"<span class='best'>{ccc}</span>"
            row += [
                ccc,
                _pm(fm[f"pearson_{d}"], fs[f"pearson_{d}"]),
                _pm(fm[f"rmse_{d}"], fs[f"rmse_{d}"]),
                _f(vm[f"ccc_{d}"]),
            ]
        rows.append(row)
    n = metrics[0]["n_folds"]
    return "\n".join(
        [
            "<h2>Results: agreement with the labels over time</h2>",
            f"<p>Lin's concordance correlation (CCC), Pearson r and RMSE on the labelled frames "
            f"of each test fold, mean ± std over {n} folds; video CCC: the mean of every test "
            "video's own CCC. Frames without a label count nowhere. A frame's prediction is "
            "the mean of the clip windows covering it.</p>",
            table_html(header, rows, left=2),
        ]
    )


def folds_section(metrics: list[dict]) -> str:
    """Per fold and model: the CCC of every dimension and the fold's test subjects' count."""
    dims = metrics[0]["dimensions"]
    header = ["model", "backbone", "fold", "test videos", "labelled frames"]
    header += [f"CCC {escape(d)}" for d in dims]
    rows = []
    for m in metrics:
        for f in m["frame"]["folds"]:
            rows.append(
                [
                    escape(m["model"]),
                    escape(m["backbone"]),
                    str(f["fold"]),
                    str(f["n_videos"]),
                    str(f["n"]),
                    *(_f(f[f"ccc_{d}"]) for d in dims),
                ]
            )
    return "<details><summary>Per fold</summary>" + table_html(header, rows, left=2) + "</details>"


def comparison_section(metrics: list[dict], pairs: pd.DataFrame) -> str:
    """Every model against the ridge baseline on its backbone, paired over folds (CCC)."""
    dims = metrics[0]["dimensions"]
    rows = []
    for m in metrics:
        if m["model"] == BASELINE:
            continue
        base = next(
            (b for b in metrics if b["model"] == BASELINE and b["backbone"] == m["backbone"]), None
        )
        if base is None or not same_folds(m, base):
            rows.append(
                [
                    escape(m["model"]),
                    escape(m["backbone"]),
                    "no ridge baseline on the same folds",
                    *[""] * (3 * len(dims) - 1),
                ]
            )
            continue
        row = [escape(m["model"]), escape(m["backbone"])]
        for d in dims:
            c = oriented(pairs, m, base, f"ccc_{d}")
            if c is None:
                row += ["–", "–", "–"]
                continue
            row += [
                f"{c['mean_diff']:+.3f}",
                f"{c['better']}/{c['equal']}/{c['worse']}",
                f"{c['wilcoxon_p']:.3f}",
            ]
        rows.append(row)
    header = ["model", "backbone"]
    for d in dims:
        header += [f"ΔCCC {escape(d)}", "folds better/equal/worse", "Wilcoxon p"]
    return "\n".join(
        [
            "<h2>Against the baseline</h2>",
            "<p>Each model minus ridge on the same backbone and folds (frame-level CCC per "
            f"fold). {escape(caveat(metrics[0]['n_folds']))}</p>",
            table_html(header, rows, left=2) if rows else "<p>Only the baseline was run.</p>",
        ]
    )


def curves_figure(m: dict, dims: list[str]) -> str:
    """The sample test video of every fold: true (black) and predicted (colour) curves."""
    plt = pyplot()
    samples = m["samples"][:5]
    fig, axes = plt.subplots(
        len(dims), len(samples), figsize=(2.6 * len(samples), 1.9 * len(dims)), squeeze=False
    )
    for j, s in enumerate(samples):
        frames = np.asarray(s["frame"])
        for i, d in enumerate(dims):
            ax = axes[i][j]
            true = np.array([np.nan if v is None else v for v in s[f"true_{d}"]], float)
            pred = np.array([np.nan if v is None else v for v in s[f"pred_{d}"]], float)
            ax.plot(frames, true, color="black", lw=1.2, label="true")
            ax.plot(frames, pred, color="tab:blue", lw=1.2, label="predicted")
            ax.set_title(f"fold {s['fold']}: {s['video_id']}"[:40], fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(d, fontsize=7)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{m['model']} / {m['backbone']}", fontsize=8)
    fig.tight_layout()
    return png(fig, f"predicted and true curves, {m['model']} / {m['backbone']}")


def curves_section(metrics: list[dict]) -> str:
    dims = metrics[0]["dimensions"]
    figures = "".join(
        f"<figure>{curves_figure(m, dims)}</figure>"
        for m in sorted(metrics, key=lambda m: (m["model"], m["backbone"]))
    )
    return (
        "<h2>Predicted against true, sample test videos</h2><p>Per fold, the test video "
        "with the most labelled frames (gaps in the black curve are unlabelled frames).</p>"
        f"<div class='grid'>{figures}</div>"
    )


def targets_section(targets: pd.DataFrame | None, dims: list[str]) -> str:
    """How much of the videos the annotation files cover (qc/targets.csv)."""
    if targets is None or targets.empty:
        return ""
    rows = []
    for d in dims:
        lab = targets[f"{d}_labelled"]
        gap = targets[f"{d}_longest_gap_s"]
        rows.append(
            [
                escape(d),
                f"{100 * lab.mean():.1f} %",
                str(int((lab < 1).sum())),
                f"{gap.max():.2f} s",
            ]
        )
    return "\n".join(
        [
            "<h2>Labels over time</h2>",
            f"<p>{len(targets)} videos' annotation files carried onto their frames (linear "
            "between samples close enough, never across longer gaps).</p>",
            table_html(["dimension", "frames labelled", "videos with gaps", "longest gap"], rows),
        ]
    )
