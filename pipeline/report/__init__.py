"""The `report` stage: one self-contained `report.html` (styles and images inline, no network).

The report computes nothing that a rule could: it renders the small files the other rules
wrote (metrics, comparison.csv, the feature indexes, qc/faces.json, qc/skipped.csv,
qc/runtime.csv, the montages), all declared as inputs of the `report` rule.

    html.py     styles, number formats, tables, inline images, the page
    figures.py  confusion matrices, per-fold, on-the-fly and training-curve charts
    results.py  results per protocol, comparisons with their caveat, confusion, curves
    regression.py  a regress run's CCC / r / RMSE, folds, baseline, curves, label coverage
    quality.py  dataset audit, dataset, features, faces, run time, what was run

Every string that comes from the dataset (file names, ids, labels, reasons) is HTML-escaped.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from pipeline.report.html import fmt, page
from pipeline.report.quality import (
    audit_section,
    dataset_section,
    face_section,
    run_section,
    runtime_section,
)
from pipeline.report.results import (
    PROTOCOLS,
    by_protocol,
    comparison_section,
    confusion_section,
    curve_section,
    results_section,
    zoo_section,
)

__all__ = ["fmt", "render"]


def transductive_banner(metrics: list[dict]) -> str:
    """The warning that opens a page with transductive results: for all of them, or naming
    the few that are (one per_subject model among five must not read as the whole run)."""
    named = [m for m in metrics if m.get("protocol") == "transductive"]
    if not named:
        return ""
    if len(named) == len(metrics):
        return f"<p class='warn'>{PROTOCOLS['transductive']}</p>"
    which = ", ".join(f"{escape(m['model'])} on {escape(m['backbone'])}" for m in named)
    return (
        f"<p class='warn'>{len(named)} of these {len(metrics)} results are transductive "
        f"({which}; in their own tables below): their features were standardised per subject "
        "with the statistics of that subject's own clips, the test subjects' unlabelled test "
        "clips included (<code>normalize: per_subject</code>). They are not comparable with "
        "the other results, none of which standardised a clip with its own statistics.</p>"
    )


def render(
    metrics: list[dict],
    *,
    videos: pd.DataFrame,
    folds: pd.DataFrame,
    skipped: pd.DataFrame,
    pairs: pd.DataFrame,
    faces: dict,
    runtime: pd.DataFrame,
    index: pd.DataFrame,
    config: dict,
    montage_dirs: list[str] = (),
    targets: pd.DataFrame | None = None,
    audit: pd.DataFrame | None = None,
    curves: list[dict] = (),
) -> str:
    """The whole page, from already-computed inputs (`targets`: a regress run's
    qc/targets.csv; `audit`: qc/audit.csv; `curves`: curves/*.json)."""
    data = "\n".join([audit_section(audit), dataset_section(videos, folds, skipped, index)])
    if metrics[0].get("task") == "regress":
        return page(
            regress_body(metrics, pairs, targets, config, montage_dirs, data, faces, runtime)
        )
    protocols = by_protocol(metrics)
    banner = transductive_banner(metrics)
    cv = config.get("cv") or {}
    n_folds = metrics[0]["n_folds"]
    method = {
        "kfold": f"{n_folds} subject-grouped, label-stratified folds",
        "loso": f"leave-one-subject-out ({n_folds} folds)",
        "file": f"the official split in {escape(str(cv.get('file')))} ({n_folds} folds)",
    }.get(cv.get("method", "kfold"), f"{n_folds} folds")
    body = "\n".join(
        [
            "<h1>Dynamic facial expression recognition: cross-validated results</h1>",
            f"<p class='muted'>{len(metrics)} model × backbone combinations; {method}; no "
            "subject is in the training and the test side of any fold.</p>",
            banner,
            results_section(metrics),
            *(comparison_section(group, pairs) for _, group in protocols),
            curve_section(list(curves), metrics),
            confusion_section(metrics),
            zoo_section(metrics),
            data,
            face_section(faces, montage_dirs),
            runtime_section(runtime),
            run_section(metrics, config),
        ]
    )
    return page(body)


def regress_body(metrics, pairs, targets, config, montage_dirs, data, faces, runtime) -> str:
    """The page of a regress run: its results first, then the same data sections."""
    from pipeline.report import regression

    dims = metrics[0]["dimensions"]
    return "\n".join(
        [
            "<h1>Affect over time: cross-validated results</h1>",
            f"<p class='muted'>{len(metrics)} model × backbone combinations; dimensions "
            f"{escape(', '.join(dims))}; {metrics[0]['n_folds']} folds; no subject is in the "
            "training and the test side of any fold.</p>",
            regression.results_section(metrics),
            regression.folds_section(metrics),
            regression.comparison_section(metrics, pairs),
            regression.curves_section(metrics),
            regression.targets_section(targets, dims),
            data,
            face_section(faces, montage_dirs),
            runtime_section(runtime),
            run_section(metrics, config),
        ]
    )
