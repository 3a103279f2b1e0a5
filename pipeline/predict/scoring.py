"""A labelled batch scored as the DAG scores its folds: a trained model on another dataset.

Evaluating a model on a corpus it was not trained on (cross-corpus) is routine: give
`pipeline.predict` a sheet with a `label` column and it writes, beside `summary.csv`,

- `metrics.json`: WAR, UAR and macro-F1 of the videos' predictions against their labels, each
  with its 95 % interval (`pipeline.intervals`' bootstrap: over subjects when the sheet has a
  `subject` column, else over videos), per-label recall, the confusion matrix, the label
  mapping and what was not scored;
- `confusion.csv`: one row per label (as mapped), one column per class of the model.

Labels named otherwise than the model's classes are mapped with `--map-label SHEET=MODEL`
(`angry=anger`). A label that maps to no class of the model is counted, never dropped: its
videos are errors (the model cannot predict that class), in WAR, UAR and macro-F1 alike, and
the message names it with its count and the closest class names to map it to. Videos that
failed (no face, undecodable) have no prediction: they are counted apart, not scored.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.common import ConfigError, write_csv_atomic, write_json_atomic
from pipeline.datasets.findings import normal_form
from pipeline.evaluate import scores
from pipeline.intervals import KEYS, interval


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """{sheet label: model class} from `SHEET=MODEL` words."""
    mapping = {}
    for pair in pairs:
        sheet, sep, model = pair.partition("=")
        if not sep or not sheet.strip() or not model.strip():
            raise ConfigError(
                f"--map-label {pair!r}: write SHEET_LABEL=MODEL_CLASS, e.g. angry=anger"
            )
        mapping[sheet.strip()] = model.strip()
    return mapping


def suggest(labels: Sequence[str], classes: Sequence[str]) -> dict[str, str]:
    """The model class each unknown label most likely means: the same normal form (case,
    spaces, numbers), else the one class sharing its stem (a common start of 3 letters or
    more and of half the shorter word: `happy` → `happiness`, `angry` → `anger`), else the
    closest spelling (difflib, ratio ≥ 0.6)."""
    forms = {normal_form(c): c for c in classes}
    out = {}
    for label in labels:
        form = normal_form(label)
        stems = [f for f in forms if _stem(form, f)]
        close = difflib.get_close_matches(form, list(forms), n=1, cutoff=0.6)
        match = forms.get(form) or (forms[stems[0]] if len(stems) == 1 else None)
        match = match or (forms[close[0]] if close else None)
        if match:
            out[label] = match
    return out


def mapping_hint(labels: Sequence[str], classes: Sequence[str]) -> str:
    """What to add for labels the model does not know, when classes look like them."""
    pairs = " ".join(f"{k}={v}" for k, v in suggest(labels, classes).items())
    if pairs:
        return f"if they mean those classes, add --map-label {pairs}"
    return "map them with --map-label SHEET=MODEL if they mean one of them"


def _stem(a: str, b: str) -> bool:
    common = len(os.path.commonprefix([a, b]))
    return common >= 3 and common >= min(len(a), len(b)) / 2


def score(
    table: pd.DataFrame, classes: list[str], mapping: dict[str, str] | None = None
) -> dict | None:
    """The metrics of a batch's summary table (video_id, status, prediction, label, optional
    subject) against its labels; None when it has no labels."""
    if "label" not in table.columns:
        return None
    mapping = dict(mapping or {})
    labelled = table[table.label.astype(str).str.strip().ne("") & table.label.notna()]
    if labelled.empty:
        return None
    scored = labelled[labelled.status != "failed"].copy()
    scored["label"] = [mapping.get(str(x).strip(), str(x).strip()) for x in scored.label]
    unknown = sorted(set(scored.label) - set(classes))
    rows = [*classes, *unknown]  # a label the model cannot predict: a row of errors
    scored["pred"] = scored.prediction.astype(str)
    subjects = "subject" in scored.columns and scored.subject.astype(str).str.strip().ne("").all()
    scored["subject"] = scored.subject.astype(str) if subjects else scored.video_id.astype(str)
    index = {c: i for i, c in enumerate(rows)}
    result = {
        "n": len(scored),
        "classes": list(classes),
        "mapping": mapping,
        "unmapped": {x: int((scored.label == x).sum()) for x in unknown},
        "suggested": suggest(unknown, classes),
        "failed": int((labelled.status == "failed").sum()),
        "unlabelled": len(table) - len(labelled),
        "interval_over": "subjects" if subjects else "videos",
    }
    if scored.empty:
        return result
    point = scores(scored.label.map(index).to_numpy(), scored.pred.map(index).to_numpy(), len(rows))
    ci = interval(scored, rows)
    result.update({key: ci[key] for key in KEYS})
    result["recall"] = dict(zip(rows, point["recall"], strict=True))
    result["confusion"] = {"rows": rows, "columns": list(classes)}
    result["confusion"]["counts"] = [r[: len(classes)] for r in point["confusion"]]
    return result


def write(out_dir: str | Path, metrics: dict) -> None:
    out = Path(out_dir)
    write_json_atomic(out / "metrics.json", metrics)
    if "confusion" in metrics:
        grid = metrics["confusion"]
        table = pd.DataFrame(grid["counts"], index=grid["rows"], columns=grid["columns"])
        write_csv_atomic(out / "confusion.csv", table.rename_axis("label").reset_index())


def describe(metrics: dict) -> str:
    """One paragraph for the terminal: the scores with their intervals and what was not."""
    if "war" not in metrics:
        text = f"none of the {metrics['failed']} labelled videos was predicted: nothing to score"
    else:
        parts = [
            f"{name} {100 * metrics[key]['pooled']:.1f} % "
            f"[{100 * metrics[key]['low']:.1f}–{100 * metrics[key]['high']:.1f}]"
            for key, name in (("war", "WAR"), ("uar", "UAR"), ("macro_f1", "macro-F1"))
        ]
        text = (
            f"{metrics['n']} labelled videos against their labels: {', '.join(parts)} "
            f"(95 % intervals over {metrics['interval_over']})"
        )
    if metrics["unmapped"]:
        counts = ", ".join(f"{k!r}: {n}" for k, n in metrics["unmapped"].items())
        text += (
            f". {sum(metrics['unmapped'].values())} videos have labels that are none of the "
            f"model's classes ({', '.join(metrics['classes'])}) and count as errors: {counts}; "
            + mapping_hint(list(metrics["unmapped"]), metrics["classes"])
        )
    if metrics["failed"]:
        text += f". {metrics['failed']} labelled videos failed and are not scored"
    return text
