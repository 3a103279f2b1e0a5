"""The `dataset` stage: validate a label sheet and probe its videos into `videos.csv`.

A sheet is a CSV file (comma, semicolon or tab separated; UTF-8) with the columns

    path     a video file or a folder of frame images, relative to the data root
    subject  who is filmed: folds never split a subject
    label    the expression class of the whole video

and optionally `video_id` (letters, digits, `_`, `-`, `.`; without it the id is derived from
the path relative to the data root) and `reference`: a photo (JPEG, PNG…, relative to the data
root) of the person to follow in that video when several people are filmed (see
`pipeline.faces.identity`) and `annotation`: a CSV of continuous labels over time for that video
(`pipeline.datasets.annotations`), read by `--task regress` only: here its existence; its
content is checked with the config's `dataset.annotation` settings when the workflow starts
(`annotation_problems`), so that changing those settings re-runs the targets and training,
never this stage.
With `--task regress` every row needs an annotation and `label` may be left out. Every
problem in the sheet is reported at once, with its line number, before any video is opened.
Videos that cannot be decoded are skipped with their reason (`on_error: skip`) or stop the
run (`on_error: fail`).

Paths stay inside the data root as written (`..` may not leave it); a symbolic link in the
root may point elsewhere (`follow_links`, the default), which the `link` column records. What
a per-row check cannot see (labels, a file listed twice, the same content twice, thin
classes, outliers) is the audit's (`pipeline.datasets.audit`), which reads this stage's
table: `probe_videos` records each video's sheet `line` and content `Fingerprint`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import multiprocessing as mp
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from pipeline.common import (
    SheetError,
    VideoError,
    parse_params,
    run_main,
    setup_logging,
    write_csv_atomic,
)
from pipeline.datasets.annotations import read_all
from pipeline.datasets.audit import duplicate_checks
from pipeline.datasets.findings import Findings
from pipeline.video import VideoInfo, probe

log = logging.getLogger(__name__)

REQUIRED = ("path", "subject", "label")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VIDEO_COLUMNS = [
    "video_id",
    "path",
    "subject",
    "label",
    "fps",
    "n_frames",
    "width",
    "height",
    "source_fps",
    "target_fps",
    "rotation",
    "reference",
    "annotation",
    "line",
    "link",
    "content",
]
SKIP_COLUMNS = ["video_id", "path", "stage", "reason"]


def derive_id(relative: str) -> str:
    """A file-name-safe id from a sheet path: `a b/c.mp4` → `a_b__c`."""
    stem = relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("._") for part in Path(stem).parts]
    text = "__".join(p for p in parts if p) or "video"
    if not ID_PATTERN.match(text):
        text = "v_" + text
    return text


def relative_to_root(written: str, base: Path) -> str:
    """The sheet path `written` relative to the data root `base`, for its id: as written when
    it is relative; an absolute path loses the root's part (so `/data/set/a/clip.mp4` under
    root `/data/set` is `a/clip.mp4`, not the whole path). `locate` has made sure that the
    path, as written, is inside the root."""
    if not Path(written).is_absolute():
        return written
    root = Path(os.path.normpath(base.absolute()))
    return str(Path(os.path.normpath(written)).relative_to(root))


def check_photo(path: Path) -> str | None:
    """Why the reference photo `path` cannot be used, or None."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "does not exist" if not path.exists() else "is not a file"
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        return f"is not a readable image ({err})"
    return None


def column_files(
    sheet: str | Path, column: str, root: str | Path | None = None
) -> list[tuple[int, Path]]:
    """(line, path under the root) of every row of a sheet that names a file in `column`.
    Lenient: a sheet that cannot be read gives none; read_sheet says why."""
    try:
        text = _decode(Path(sheet))
    except (OSError, SheetError):
        return []
    header = text.splitlines()[0] if text.strip() else ""
    rows = csv.DictReader(io.StringIO(text), delimiter=max(",;\t", key=header.count))
    base = Path(root) if root else Path(sheet).parent
    return [
        (i, base / row[column].strip())
        for i, row in enumerate(rows, start=2)
        if (row.get(column) or "").strip()
    ]


def reference_photos(sheet: str | Path, root: str | Path | None = None) -> list[str]:
    """The existing reference photos a sheet names (for the workflow: the dataset rule reruns
    when one changes)."""
    found = {path for _, path in column_files(sheet, "reference", root)}
    return sorted(str(p) for p in found if p.is_file())


def annotation_problems(sheet: str | Path, root: str | Path | None, settings: dict) -> list[str]:
    """Every problem of the annotation files a sheet names, read with the config's
    `dataset.annotation` settings (the workflow checks them before any job runs)."""
    named = column_files(sheet, "annotation", root)
    missing = [
        f"{sheet}: line {i}: annotation {str(p)!r} does not exist"
        for i, p in named
        if not p.is_file()
    ]
    if missing:
        return missing
    try:
        read_all(
            [p for _, p in named],
            settings.get("dimensions"),
            settings.get("range"),
            settings.get("missing", []),
            settings.get("row_is_frame", False),
        )
    except SheetError as err:
        return str(err).split("\n  ")[1:]
    return []


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SheetError(
            f"{path}: not UTF-8 (byte {err.start}: {raw[err.start : err.start + 4]!r}); "
            "save the sheet as UTF-8 CSV"
        ) from None


def locate(written: str, base: Path, base_resolved: Path) -> tuple[Path | None, str]:
    """(the file, link) of a sheet path: None when the path as written leaves the root (`..`
    counted lexically, as written); link is "" when no symbolic link is on the way, "inside"
    when links lead to a file in the root, "outside" when to a file elsewhere."""
    root = Path(os.path.normpath(base.absolute()))
    lexical = Path(os.path.normpath(root / written))
    if not lexical.is_relative_to(root):
        return None, ""
    full = lexical.resolve()
    if not full.is_relative_to(base_resolved):
        return full, "outside"
    same = full.relative_to(base_resolved) == lexical.relative_to(root)
    return full, "" if same else "inside"


def read_sheet(
    sheet: str | Path,
    root: str | Path | None = None,
    task: str = "classify",
    follow_links: bool = True,
) -> pd.DataFrame:
    """Validate a sheet; return video_id, path (resolved), subject, label, reference,
    annotation (absolute or None), line, link.

    Raises SheetError listing every problem (line numbers count the header as line 1). A file
    listed twice is the audit's to report (with every other duplicate), unless the sheet has
    other problems: then it is listed with them, so that one run says everything.
    """
    sheet = Path(sheet)
    if not sheet.is_file():
        raise SheetError(f"{sheet}: dataset sheet not found; set dataset.sheet in the config")
    text = _decode(sheet)
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(",;\t", key=header.count)
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    columns = [c.strip() for c in (rows[0].keys() if rows else header.split(delimiter))]
    required = REQUIRED if task == "classify" else ("path", "subject")
    missing = [c for c in required if c not in columns]
    if missing:
        raise SheetError(
            f"{sheet}: missing column(s) {', '.join(missing)}; found {columns!r}. "
            f"A sheet needs a header line with: {', '.join(required)} (comma, semicolon or tab)"
        )
    base = Path(root) if root else sheet.parent
    base_resolved = base.resolve()
    problems: list[str] = []
    records = []
    seen: dict[str, int] = {}
    checked: dict[Path, str | None] = {}  # reference photo → why it cannot be used
    for i, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if task != "classify":
            row["label"] = row.get("label") or "-"  # regress: labels are optional
        bad = [c for c in REQUIRED if not row.get(c)]
        if bad:
            problems.append(f"line {i}: empty {', '.join(bad)}")
            continue
        rel = row["path"]
        full, link = locate(rel, base, base_resolved)
        if full is None:
            problems.append(f"line {i}: path {rel!r} escapes the data root {str(base)!r}")
            continue
        if link == "outside" and not follow_links:
            problems.append(
                f"line {i}: {rel!r} is a symbolic link to {str(full)!r}, outside the data root "
                f"{str(base)!r}; set dataset.follow_links: true to use linked files"
            )
        elif not full.exists():
            problems.append(f"line {i}: {rel!r} does not exist (looked for {str(full)!r})")
        photo = row.get("reference") or None
        if photo:
            photo_full = (base / photo).resolve()
            if photo_full not in checked:  # one photo often serves many videos
                checked[photo_full] = check_photo(photo_full)
            why = checked[photo_full]
            if why:
                problems.append(
                    f"line {i}: reference photo {photo!r} {why} (looked for {str(photo_full)!r}); "
                    "give a JPEG or PNG of the person to follow, relative to the data root"
                )
            photo = str(photo_full)
        # a classify run reads no annotation: its files are neither needed nor checked
        notes = (row.get("annotation") or None) if task == "regress" else None
        if notes:
            notes_full = (base / notes).resolve()
            if not notes_full.is_file():
                problems.append(
                    f"line {i}: annotation {notes!r} does not exist (looked for "
                    f"{str(notes_full)!r}); paths are relative to the data root"
                )
            notes = str(notes_full)
        elif task == "regress":
            problems.append(f"line {i}: no annotation (task regress needs one for every video)")
        vid = row.get("video_id") or derive_id(relative_to_root(rel, base))
        if not ID_PATTERN.match(vid):
            problems.append(f"line {i}: video_id {vid!r} may only use letters, digits, _ - .")
        if vid in seen:
            if row.get("video_id"):
                problems.append(f"line {i}: duplicate video_id {vid!r} (also line {seen[vid]})")
                continue
            vid = f"{vid}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
        seen[vid] = i
        records.append(
            {
                "video_id": vid,
                "path": str(full),
                "subject": row["subject"],
                "label": row["label"],
                "reference": photo,
                "annotation": notes,
                "line": i,
                "link": link,
            }
        )
    if not rows:
        problems.append("the sheet has a header but no rows")
    if problems and records:  # the audit's check of a file listed twice, said now, not next run
        found = Findings()
        duplicate_checks(pd.DataFrame.from_records(records).assign(content=""), found)
        problems += [f["message"] for f in found if f["severity"] == "error"]
    if problems:
        listing = "\n  ".join(problems)
        raise SheetError(f"{sheet}: {len(problems)} problem(s):\n  {listing}")
    return pd.DataFrame.from_records(records)


def _probe(args: tuple) -> tuple[VideoInfo | None, str | None]:
    """probe() of one video in a worker: (info, None) or (None, the reason it cannot be used)."""
    path, folder_fps, target_fps = args
    try:
        return probe(path, folder_fps, target_fps, fingerprint=True), None
    except VideoError as err:
        return None, str(err)


def probe_videos(
    sheet: pd.DataFrame,
    folder_fps: float,
    on_error: str,
    target_fps: float | None = None,
    jobs: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add fps, n_frames, width, height (as decoded: upright, after target_fps), source_fps,
    target_fps, rotation and content (the video's `Fingerprint`); return (usable videos,
    skipped videos). Probing decodes every frame; `jobs` > 1 probes that many videos at once
    in worker processes (same results, same order).
    """
    records = sheet.to_dict("records")
    tasks = [(rec["path"], folder_fps, target_fps) for rec in records]
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp.get_context("spawn")) as pool:
            results = list(pool.map(_probe, tasks, chunksize=max(1, len(tasks) // (8 * jobs))))
    else:
        results = map(_probe, tasks)
    ok, skipped = [], []
    for rec, (info, error) in zip(records, results, strict=True):
        if error is not None:
            if on_error == "fail":
                raise VideoError(error)
            log.warning("skipping %s: %s", rec["video_id"], error)
            skipped.append({**rec, "stage": "dataset", "reason": error})
            continue
        ok.append(
            {
                **rec,
                "fps": info.fps,
                "n_frames": info.n_frames,
                "width": info.width,
                "height": info.height,
                "source_fps": info.source_fps,
                "target_fps": target_fps if info.fps < info.source_fps else None,
                "rotation": info.rotation,
                "content": info.content,
            }
        )
    videos = pd.DataFrame(ok, columns=VIDEO_COLUMNS)
    return videos, pd.DataFrame(skipped, columns=SKIP_COLUMNS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Validate the dataset sheet and probe its videos.")
    ap.add_argument("--sheet", required=True)
    ap.add_argument("--out", required=True, help="videos.csv")
    ap.add_argument("--skipped", required=True, help="CSV of videos skipped, with reasons")
    ap.add_argument("--params", default="{}", help="the config's `dataset` section as JSON")
    ap.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    ap.add_argument("--threads", type=int, default=1, help="videos probed at once")
    ap.add_argument("--task", choices=("classify", "regress"), default="classify")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = parse_params(args.params)
    sheet = read_sheet(args.sheet, params.get("root"), args.task, params.get("follow_links", True))
    videos, skipped = probe_videos(
        sheet,
        params.get("folder_fps", 30.0),
        args.on_error,
        params.get("target_fps"),
        jobs=args.threads,
    )
    if videos.empty:
        raise SheetError(f"{args.sheet}: none of the {len(sheet)} videos can be decoded")
    write_csv_atomic(args.skipped, skipped)
    write_csv_atomic(args.out, videos)
    log.info(
        "%d videos, %d skipped, %d subjects", len(videos), len(skipped), videos.subject.nunique()
    )


if __name__ == "__main__":
    run_main(main)
