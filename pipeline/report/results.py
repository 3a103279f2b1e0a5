"""Report sections about the results: tables per protocol, comparisons, confusion, curves.

Every number comes from the metrics files (`evaluate`) and `comparison.csv` (`compare`).
"""

from __future__ import annotations

from html import escape

import pandas as pd

from pipeline.compare import caveat, oriented, same_folds
from pipeline.report.figures import (
    BASELINE,
    confusion_figure,
    folds_figure,
    onthefly_figure,
    people_figure,
    training_figure,
)
from pipeline.report.html import fmt, fmt_diff, fmt_interval, table_html


def baseline_for(m: dict, metrics: list[dict]) -> dict | None:
    """The meanpool result on the same backbone (else none) to compare a model with."""
    for other in metrics:
        if other["model"] == BASELINE and other["backbone"] == m["backbone"]:
            return other
    return None


def comparison_section(metrics: list[dict], pairs: pd.DataFrame) -> str:
    """Each model against the baseline on its backbone, and the best result against the rest:
    paired over the same folds (rows of comparison.csv), with the Wilcoxon p and its caveat."""

    def compare(a: dict, b: dict, metric: str) -> dict:
        row = oriented(pairs, a, b, metric)
        if row is None:
            raise KeyError(
                f"comparison.csv has no {metric} row for {a['model']}/{a['backbone']} "
                f"against {b['model']}/{b['backbone']}"
            )
        return row

    def cells(c_war: dict, c_uar: dict) -> list[str]:
        mcnemar = c_war.get("mcnemar_p")
        missing = mcnemar is None or mcnemar != mcnemar  # NaN: no video predictions
        return [
            fmt_diff(c_war),
            fmt_diff(c_uar),
            "–" if missing else f"{mcnemar:.3f}",
            "–" if missing else f"{int(c_war['only_a'])}/{int(c_war['only_b'])}",
            f"{100 * c_war['mean_diff']:+.1f}",
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
    header = [
        "Δ WAR [95 %]",
        "Δ UAR [95 %]",
        "McNemar p",
        "videos only a/b",
        "Δ WAR over folds",
        "folds +/=/−",
        "Wilcoxon p",
    ]
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


def curve_section(curves: list[dict], metrics: list[dict]) -> str:
    """Video WAR against the number of training subjects (curves/*.json), with intervals."""
    if not curves:
        return ""
    sizes = sorted({p["n_subjects"] for c in curves for p in c["points"]})
    rows = []
    for c in curves:
        by_n = {p["n_subjects"]: p for p in c["points"]}
        rows.append(
            [escape(c["model"]), escape(c["backbone"]), escape(c["protocol"])]
            + [
                f"{fmt_interval(by_n[n]['war'])} <span class='muted'>({by_n[n]['subsets']})</span>"
                if n in by_n
                else "–"
                for n in sizes
            ]
        )
    left_out = sorted(
        {f"{m['model']} / {m['backbone']}" for m in metrics}
        - {f"{c['model']} / {c['backbone']}" for c in curves}
    )
    note = (
        f" Left out: {escape(', '.join(left_out))} (a backbone trained per fold stands on all "
        "of a fold's training subjects, so a subset's model would not)."
        if left_out
        else ""
    )
    return "\n".join(
        [
            "<h2>Accuracy against the number of training people</h2>",
            "<p>Each result trained again, fold by fold, on subsets of that fold's training "
            "subjects (every subset, or a seeded random sample of them; their number in "
            "brackets) and tested on the same test videos: video WAR pooled over every test "
            "video, fold and subset, in %, with its 95 % interval (bootstrap over the test "
            "subjects and their videos). A curve still rising at the right says more people "
            f"would help.{note}</p>",
            f"<figure>{people_figure(curves, metrics[0]['chance']['war'])}</figure>",
            table_html(
                ["model", "backbone", "protocol", *(f"{n} subject(s)" for n in sizes)], rows, left=3
            ),
        ]
    )


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
    "calibrated": (
        "Person-calibrated protocol: each video's features were standardised with the "
        "statistics of its subject's <em>other</em> videos, never its own, unlabelled "
        "(<code>normalize: calibrated</code>): inductive for the test clip, as a deployment "
        "that records each person once before use. The calibration videos here span every "
        "class; a calibration recording that does not may calibrate less well."
    ),
}


def by_protocol(metrics: list[dict]) -> list[tuple[str, list[dict]]]:
    """Results grouped by protocol (inductive first); never mixed in one table."""
    groups: dict[str, list[dict]] = {}
    for m in metrics:
        groups.setdefault(m.get("protocol", "inductive"), []).append(m)
    order = {"inductive": 0, "calibrated": 1}
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], 2), kv[0]))


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
        ci = m["video"].get("interval") or {}
        cells += [fmt_interval(ci.get("war")), fmt_interval(ci.get("uar"))]
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
            "",
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
        "video WAR, pooled [95 %]",
        "video UAR, pooled [95 %]",
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


def results_section(metrics: list[dict]) -> str:
    """Per protocol: the comparison table, per-class recall and the per-fold chart."""
    chance = metrics[0]["chance"]
    html = [
        "<h2>Results</h2>",
        "<p>Subject-independent cross-validation: mean ± std over folds, in %. WAR = accuracy; "
        "UAR = mean per-class recall; best in bold. Chance: WAR of always answering the most "
        f"frequent class ({fmt(chance['war'])} %), UAR 1/K ({fmt(chance['uar'])} %). "
        "Pooled [95 %]: the score over every test video of every fold and its 95 % interval, "
        "from a bootstrap that resamples the test subjects and, within each, their videos: "
        "rows whose intervals overlap widely are not told apart by this data.</p>",
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
