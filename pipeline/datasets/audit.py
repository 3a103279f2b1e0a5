"""The `audit` stage: what a check of one row at a time cannot see, before any face job.

`python -m pipeline.datasets.audit run` reads the dataset stage's table (`probed.csv`: one row
per decodable video, with its sheet line, link and content fingerprint) and writes

- `videos.csv`: the same rows, labels mapped by `dataset.label_aliases`: what every later
  stage that needs a label reads;
- `qc/audit.csv`: one row per finding: check, severity, rows (sheet lines), videos, message.

| check | severity | finding |
|---|---|---|
| label_variant | error | labels that differ only by case, whitespace, Unicode form or the way a number is written (`1`, `01`, `1.0`) |
| subject_variant | error | subject ids that differ only so (`7`, `07`): one person split in two, on both sides of a fold |
| unknown_label | error | a label not in `dataset.labels` |
| one_class | error | (classify) a single label: nothing to tell apart |
| too_few_subjects | error | fewer subjects than `cv.k` (kfold) or than two |
| duplicate_path | error | one file on several rows |
| duplicate_content | error / warning | the same frames in two files: under two subjects (a test video in training) / under one (a clip counted twice) |
| thin_class | warning | a class with fewer subjects than folds, or from one subject |
| single_class_subject | warning | subjects with two or more videos, all of one class |
| short_video | warning | videos shorter than half a clip |
| fps_outlier, size_outlier | warning | frame rate beyond 1.5× / short side beyond 2× the median |
| links | info | rows reached through symbolic links |
| several_persons | info | one video on several rows, each with its own subject and reference photo |
| aliases | info | what `dataset.label_aliases` mapped, and aliases that matched no label |

`python -m pipeline.datasets.audit check` is the gate the face stage waits for: it lists the
findings and fails on any error, and on any warning with `--strict true` (`dataset.strict`).
The two are separate rules so that changing `dataset.strict` re-runs only the gate, and the
face stage reads the probe's table, not `videos.csv`: changing aliases re-runs no video stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata
from collections.abc import Sequence

import pandas as pd

from pipeline.common import (
    SheetError,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
    write_csv_atomic,
    write_text_atomic,
)
from pipeline.datasets.findings import (
    Findings,
    first_few,
    how_differs,
    lines_of,
    named_few,
    normal_form,
    plural,
    where_in_sheet,
)

log = logging.getLogger(__name__)

FPS_RATIO = 1.5  # a frame rate beyond this factor of the median is an outlier
SIZE_RATIO = 2.0  # a short side beyond this factor of the median is an outlier


def apply_aliases(videos: pd.DataFrame, aliases: dict, found: Findings) -> pd.DataFrame:
    """Labels mapped by `aliases` (exact, after stripping as the sheet's cells are)."""
    aliases = {str(k).strip(): str(v).strip() for k, v in (aliases or {}).items()}
    mapped = videos.label.map(lambda x: aliases.get(x, x))
    hit = videos[mapped != videos.label]
    if not hit.empty:
        counts = hit.groupby("label").size()
        pairs = ", ".join(f"{k!r} → {aliases[k]!r} ({n})" for k, n in counts.items())
        found.add("aliases", "info", hit, f"dataset.label_aliases mapped {len(hit)} rows: {pairs}")
    unused = sorted(set(aliases) - set(videos.label))
    if unused:
        found.add(
            "aliases",
            "info",
            videos.iloc[:0],
            f"dataset.label_aliases {', '.join(map(repr, unused))} matched no label of the sheet",
        )
    return videos.assign(label=mapped)


def label_checks(videos: pd.DataFrame, known: Sequence[str] | None, found: Findings) -> dict:
    """Variants, unknown labels, a single class; return {variant: the spelling it would be}
    (for the class checks to count classes as they are meant)."""
    known = list(known or [])
    by_form = {normal_form(k): k for k in known}
    variants = {}
    for form, rows in videos.groupby(videos.label.map(normal_form), sort=True):
        counts = rows.groupby("label").size()  # most used first; on a tie the NFC spelling
        order = sorted(
            counts.index, key=lambda x: (-counts[x], not unicodedata.is_normalized("NFC", x), x)
        )
        spellings = counts[order]
        target = by_form.get(form)
        if len(spellings) == 1 and (not known or target is None or target == spellings.index[0]):
            continue
        canonical = target or spellings.index[0]
        others = [s for s in spellings.index if s != canonical]
        variants.update(dict.fromkeys(others, canonical))
        listing = ", ".join(
            f"{s!r} ({plural(n, 'video')}{where_in_sheet(rows[rows.label == s]) if s in others else ''})"
            for s, n in spellings.items()
        )
        why = "; ".join(
            f"{s!r} differs from {canonical!r} only by {how_differs(s, canonical)}" for s in others
        )
        if len(spellings) > 1:
            head = f"labels {listing} would be {len(spellings)} classes: {why}"
        else:
            head = f"label {listing} is not in dataset.labels: {why}"
        where = " (as dataset.labels spells it)" if target else ""
        fix = json.dumps({s: canonical for s in others}, ensure_ascii=False)
        found.add(
            "label_variant",
            "error",
            rows,
            f"{head}. If they are one class{where}, map them: dataset.label_aliases: "
            f"{fix}; else rename them in the sheet",
        )
    if known:
        unknown = videos[~videos.label.isin(known) & ~videos.label.isin(variants)]
        for label, rows in unknown.groupby("label", sort=True):
            found.add(
                "unknown_label",
                "error",
                rows,
                f"label {label!r} ({plural(len(rows), 'video')}) is not in dataset.labels "
                f"({', '.join(known)}); add it there, map it with dataset.label_aliases, "
                "or correct the sheet",
            )
    if videos.label.nunique() == 1:
        found.add(
            "one_class",
            "error",
            videos,
            f"every video has the label {videos.label.iloc[0]!r}: there is nothing to "
            "classify; check the sheet's label column",
        )
    return variants


def subject_checks(videos: pd.DataFrame, found: Findings) -> None:
    """Subject ids that differ only by case, whitespace, Unicode form or the way a number is
    written: one person under two ids, whom the folds would put on both sides of a split."""
    subjects = videos.subject.astype(str)
    for _, rows in videos.groupby(subjects.map(normal_form), sort=True):
        counts = rows.groupby("subject").size()
        if len(counts) < 2:
            continue
        first = counts.index[0]
        listing = ", ".join(
            f"{s!r} ({plural(n, 'video')}{where_in_sheet(rows[rows.subject == s])})"
            for s, n in counts.items()
        )
        why = "; ".join(
            f"{s!r} differs from {first!r} only by {how_differs(s, first)}"
            for s in counts.index[1:]
        )
        found.add(
            "subject_variant",
            "error",
            rows,
            f"subjects {listing} would be {len(counts)} people: {why}. One person under two "
            "ids ends up on both sides of a fold (trained and tested on): write one id in the "
            "sheet's subject column (or, for different people, ids that differ by more)",
        )


def _persons(rows: pd.DataFrame) -> bool:
    """Rows that follow different people in one video: each its own subject and its own
    reference photo (`pipeline.faces.identity`), which is no duplicate."""
    refs = rows.get("reference", pd.Series("", index=rows.index)).fillna("").astype(str)
    return bool(refs.str.len().all()) and refs.is_unique and rows.subject.is_unique


def duplicate_checks(videos: pd.DataFrame, found: Findings) -> None:
    persons = []
    for path, rows in videos[videos.path.duplicated(keep=False)].groupby("path", sort=True):
        if _persons(rows):
            persons.append(rows)
            continue
        found.add(
            "duplicate_path",
            "error",
            rows,
            f"lines {', '.join(lines_of(rows).split(';'))} list the same file {path!r}: "
            "list each video once (or, for several people in it, each row with its own "
            "subject and reference photo)",
        )
    content = videos[videos.content.astype(bool)]
    for _, rows in content[content.content.duplicated(keep=False)].groupby("content"):
        if rows.path.nunique() < 2:
            continue  # one file on several rows: said above
        if _persons(rows):
            persons.append(rows)
            continue
        subjects = rows.subject.unique()
        named = named_few(rows, lambda r: f"line {r.line}, subject {r.subject}")
        if len(subjects) > 1:
            found.add(
                "duplicate_content",
                "error",
                rows,
                f"{named} have the same frames under {len(subjects)} subjects: a test "
                "video would be in training; remove the copies or correct their subject",
            )
        else:
            found.add(
                "duplicate_content",
                "warning",
                rows,
                f"{named} have the same frames: the clip counts {len(rows)} times; "
                "remove the copies",
            )
    if persons:
        rows = pd.concat(persons)
        found.add(
            "several_persons",
            "info",
            rows,
            f"{plural(len(persons), 'video')} followed person by person (each row its own "
            f"subject and reference photo): {named_few(rows)}",
        )


def fold_checks(videos: pd.DataFrame, cv: dict, found: Findings) -> None:
    """Too few subjects for the folds: the folds stage would stop, after the face stage."""
    method, n = cv.get("method", "kfold"), videos.subject.nunique()
    need = cv.get("k", 10) if method == "kfold" else 2
    if method != "file" and n < need:
        found.add(
            "too_few_subjects",
            "error",
            videos,
            f"{plural(n, 'subject')}, but cv.method {method} needs {need} or more: lower "
            "cv.k, add subjects, or check the sheet's subject column",
        )


def class_checks(videos: pd.DataFrame, cv: dict, found: Findings) -> None:
    """Classes too thin for the folds, subjects of one class."""
    method = cv.get("method", "kfold")
    k = cv.get("k") if method == "kfold" else None
    for label, rows in videos.groupby("label", sort=True):
        n = rows.subject.nunique()
        if k and n < k:
            found.add(
                "thin_class",
                "warning",
                rows,
                f"class {label!r} comes from {plural(n, 'subject')} for {k} folds: at least "
                f"{k - n} test folds hold none of it (its recall there is undefined), and "
                "the folds cannot be stratified for it",
            )
        elif n == 1:
            found.add(
                "thin_class",
                "warning",
                rows,
                f"class {label!r} comes from one subject ({rows.subject.iloc[0]}): when "
                "that subject is tested, no training video has the class",
            )
    per_subject = videos.groupby("subject").agg(n=("label", "size"), classes=("label", "nunique"))
    single = per_subject[(per_subject.n >= 2) & (per_subject.classes == 1)].index
    if len(single) and videos.label.nunique() > 1:
        rows = videos[videos.subject.isin(single)]
        firsts = rows.groupby("subject").label.first()
        listing = first_few([f"{s} ({label})" for s, label in firsts.items()])
        found.add(
            "single_class_subject",
            "warning",
            rows,
            f"{len(single)} of {videos.subject.nunique()} subjects show one class in all "
            f"their videos: {listing}; for them "
            "person and class coincide, and person calibration (cv.normalize) removes the "
            "class with the person",
        )


def video_checks(videos: pd.DataFrame, clip_length: int, found: Findings) -> None:
    """Short videos, frame rate and size outliers."""
    short = videos[videos.n_frames < clip_length / 2]
    if not short.empty:
        found.add(
            "short_video",
            "warning",
            short,
            f"{plural(len(short), 'video')} shorter than half a clip (clips.length "
            f"{clip_length}): {named_few(short, lambda r: plural(r.n_frames, 'frame'))}; "
            f"each is one clip padded to {clip_length} frames",
        )
    if len(videos) < 3:
        return
    fps = videos.fps.astype(float)
    median = float(fps.median())
    off = videos[(fps > median * FPS_RATIO) | (fps < median / FPS_RATIO)]
    if not off.empty:
        found.add(
            "fps_outlier",
            "warning",
            off,
            f"{plural(len(off), 'video')} far from the median frame rate {median:g} fps: "
            f"{named_few(off, lambda r: f'{r.fps:g} fps')}; motion runs at another speed "
            "there (dataset.target_fps evens out higher rates)",
        )
    side = videos[["width", "height"]].min(axis=1).astype(float)
    middle = float(side.median())
    off = videos[(side > middle * SIZE_RATIO) | (side < middle / SIZE_RATIO)]
    if not off.empty:
        found.add(
            "size_outlier",
            "warning",
            off,
            f"{plural(len(off), 'video')} far from the median frame size (short side "
            f"{middle:g} px): {named_few(off, lambda r: f'{r.width}×{r.height}')}",
        )


def audit(videos: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(videos with their labels mapped, findings): see the module docstring. `params`:
    labels, label_aliases, cv (method, k), clip_length, task."""
    found = Findings()
    classify = params.get("task", "classify") == "classify"
    if classify:
        videos = apply_aliases(videos, params.get("label_aliases"), found)
        variants = label_checks(videos, params.get("labels"), found)
    subject_checks(videos, found)
    duplicate_checks(videos, found)
    fold_checks(videos, params.get("cv") or {}, found)
    if classify:  # classes as meant: a variant counts with the spelling it would be
        class_checks(
            videos.assign(label=videos.label.replace(variants)), params.get("cv") or {}, found
        )
    video_checks(videos, int(params.get("clip_length", 16)), found)
    linked = videos[videos.link.astype(bool)]
    if not linked.empty:
        outside = int((linked.link == "outside").sum())
        found.add(
            "links",
            "info",
            linked,
            f"{plural(len(linked), 'video')} reached through symbolic links ({outside} to "
            "files outside the data root), followed (dataset.follow_links)",
        )
    return videos, found.table()


def _shown(rows: str, first: int = 12) -> str:
    """A finding's sheet lines for the terminal: the first few and how many (audit.csv has
    them all)."""
    lines = rows.split(";") if rows else []
    more = f", … ({len(lines)} rows)" if len(lines) > first else ""
    return f"line{'s' if len(lines) != 1 else ''} {', '.join(lines[:first])}{more}"


def gate(findings: pd.DataFrame, strict: bool) -> str:
    """The summary and every error and warning, one per line, when the run may go on; else
    SheetError with the same listing, saying what stops it."""
    counts = findings.severity.value_counts()
    errors, warnings = int(counts.get("error", 0)), int(counts.get("warning", 0))
    notes = int(counts.get("info", 0))
    stops = ["error", "warning"] if strict else ["error"]
    summary = f"{plural(errors, 'error')}, {plural(warnings, 'warning')}, {plural(notes, 'note')}"
    listing = "".join(
        f"\n  {r.severity}{' (stops the run)' if r.severity in stops else ''} {r.check} "
        f"(sheet {_shown(r.rows)}): {r.message}"
        for r in findings[findings.severity.isin(["error", "warning"])].itertuples()
    )
    where = "results/qc/audit.csv lists them with every row and video; the report shows them"
    if not findings.severity.isin(stops).any():
        return f"dataset audit: {summary} ({where}){listing}"
    why = (
        "dataset.strict is true: warnings stop the run too (set it to false to go on with them)"
        if strict and warnings
        else "fix the errors; the run stops before any face job"
    )
    raise SheetError(f"dataset audit: {summary} ({why}; {where}):{listing}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.datasets.audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="audit the probed videos")
    run.add_argument("--videos", required=True, help="dataset/probed.csv")
    run.add_argument("--out-videos", required=True, help="dataset/videos.csv")
    run.add_argument("--out", required=True, help="qc/audit.csv")
    run.add_argument("--params", default="{}", help="labels, label_aliases, cv, clip_length, task")
    check = sub.add_parser("check", help="stop on errors (and warnings with --strict true)")
    check.add_argument("--audit", required=True, help="qc/audit.csv")
    check.add_argument("--strict", choices=("true", "false"), default="false")
    check.add_argument("--out", required=True, help="a one-line summary, when the run may go on")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if args.command == "run":
        videos, findings = audit(read_csv(args.videos), parse_params(args.params))
        for r in findings.itertuples():
            log.log(
                logging.INFO if r.severity == "info" else logging.WARNING,
                "%s %s: %s",
                r.severity,
                r.check,
                r.message,
            )
        write_csv_atomic(args.out, findings)
        write_csv_atomic(args.out_videos, videos)
        log.info("%d findings on %d videos", len(findings), len(videos))
        return
    try:
        summary = gate(read_csv(args.audit), args.strict == "true")
    except SheetError as err:  # once, in the terminal (the rule tees it into its log)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("%s", summary)
    write_text_atomic(args.out, summary + "\n")


if __name__ == "__main__":
    run_main(main)
