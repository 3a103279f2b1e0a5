"""Batches: several files, folders of videos, sheets; resumable, one summary table."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import (
    ConfigError,
    VideoError,
    read_csv,
    set_threads,
    write_csv_atomic,
    write_json_atomic,
)
from pipeline.datasets.sheet import ID_PATTERN, check_photo, derive_id
from pipeline.faces.stage import torch_threads
from pipeline.predict.predictor import Predictor
from pipeline.predict.steps import video_stamp
from pipeline.video import IMAGE_SUFFIXES, natural_key

log = logging.getLogger(__name__)


VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_frame_folder(path: Path) -> bool:

    return path.is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in path.iterdir()
    )


def folder_videos(folder: Path) -> list[Path]:
    """The videos below `folder`: files with a video suffix and folders of frame images (not
    descended into), in natural order of their paths."""

    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in list(dirnames):
            if is_frame_folder(here / name):
                found.append(here / name)
                dirnames.remove(name)
        found += [here / f for f in filenames if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(folder))))


Item = tuple[str, Path, "str | None", "str | None", "str | None"]  # id, path, label, photo, subject


def sheet_videos(sheet: Path) -> list[Item]:
    """(id, path, label, reference, subject; None where the sheet has no such column) of
    every row of a sheet: a CSV with a `path` column (relative to the sheet's folder, or
    absolute), optional `video_id`, `label` (scored: `pipeline.predict.scoring`), `subject`
    (the intervals resample people) and `reference` (a photo of the person to follow, relative
    like `path`)."""

    try:
        table = read_csv(sheet)
    except Exception as err:  # pandas raises several types for a broken CSV
        raise ConfigError(f"{sheet}: cannot read it as CSV ({err})") from None
    if "path" not in table.columns:
        raise ConfigError(
            f"{sheet}: no `path` column (columns: {', '.join(table.columns)}); a sheet to "
            "predict lists one video per row in `path`, optionally `video_id`, `label`, "
            "`subject` and `reference`"
        )
    rows, problems = [], []
    for i, row in enumerate(table.itertuples(index=False), start=2):
        written = str(row.path).strip()
        if not written:
            problems.append(f"line {i}: empty path")
            continue
        vid = str(getattr(row, "video_id", "") or "").strip() or derive_id(written)
        if not ID_PATTERN.match(vid):
            problems.append(f"line {i}: video_id {vid!r} may hold only letters, digits, _ - .")
        label = str(row.label) if "label" in table.columns else None
        subject = str(row.subject) if "subject" in table.columns else None
        photo = getattr(row, "reference", None)
        photo = (
            None if pd.isna(photo) or not str(photo).strip() else sheet.parent / str(photo).strip()
        )
        if photo is not None and (why := check_photo(photo)):
            problems.append(f"line {i}: reference photo {str(photo)!r} {why}")
        photo = None if photo is None else str(photo)
        rows.append((vid, sheet.parent / written, label, photo, subject))
    if problems:
        raise ConfigError(f"{sheet}: " + "; ".join(problems))
    return rows


def expand_inputs(inputs: Sequence[str]) -> list[Item]:
    """(id, path, label, reference) of every video the inputs name: video files and frame folders as
    they are, folders of videos by their videos (ids from the path inside the folder), CSV
    sheets by their rows. Ids are made unique (`_2`, `_3`, … on a repeat); a file named twice
    is predicted once."""

    items: list[Item] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"{given}: no such video file, folder or sheet")
        if path.is_file() and path.suffix.lower() == ".csv":
            items += sheet_videos(path)
        elif path.is_file() or is_frame_folder(path):
            items.append((derive_id(path.name), path, None, None, None))
        else:
            found = folder_videos(path)
            if not found:
                raise ConfigError(
                    f"{given}: no videos in this folder (files ending "
                    f"{' '.join(VIDEO_SUFFIXES)}, or folders of frame images)"
                )
            items += [(derive_id(str(p.relative_to(path))), p, None, None, None) for p in found]
    out, seen_ids, seen_files = [], set(), set()
    for vid, path, *rest in items:
        key = os.path.realpath(path)
        if key in seen_files:
            log.warning("%s: named twice; predicted once", path)
            continue
        seen_files.add(key)
        unique, k = vid, 1
        while unique in seen_ids:
            k += 1
            unique = f"{vid}_{k}"
        seen_ids.add(unique)
        out.append((unique, path, *rest))
    return out


def batch_row(
    vid: str,
    path: Path,
    label: str | None,
    status: str,
    summary: dict | None,
    reason: str,
    seconds: float,
    classes: list[str],
    task: str = "classify",
    subject: str | None = None,
) -> dict:
    """summary.csv's row of one video: p_<class> (classify), mean_<dimension> (regress)."""
    row = {"video_id": vid, "path": str(path)}
    if label is not None:
        row["label"] = label
    if subject is not None:
        row["subject"] = subject
    row.update(
        status=status,
        prediction=(summary or {}).get("prediction", ""),
        frames=(summary or {}).get("frames", 0),
        face_frames=(summary or {}).get("face_frames", 0),
        windows=(summary or {}).get("windows", 0),
        seconds=round(seconds, 2),
        reason=reason,
    )
    key, prefix = ("means", "mean_") if task == "regress" else ("probabilities", "p_")
    for c in classes:
        row[f"{prefix}{c}"] = (summary or {}).get(key, {}).get(c, np.nan)
    return row


def run_batch(
    inputs: Sequence[str],
    model_dir: str,
    out_dir: str,
    device: str = "auto",
    threads: int = 2,
    calibration: Sequence[str] = (),
    retry_failed: bool = False,
    progress: bool | None = None,
    predictor: Predictor | None = None,
    reference: str | None = None,
    items: list[Item] | None = None,
) -> pd.DataFrame:
    """Predict every video the inputs name with one Predictor (networks loaded once) into
    `out_dir/<video_id>/`, and write `out_dir/summary.csv` (one row per video, in input order,
    rewritten as videos finish). Resumable: a video whose folder holds a summary.json of the
    same model and file is skipped; one that failed before (failed.json) is skipped too
    unless `retry_failed`. `reference`: a photo of the person to follow in every video
    (a sheet's `reference` column overrides it per row); `items`: `expand_inputs(inputs)`
    when the caller has it already. A video that cannot be used (undecodable, no face…) is recorded
    with its reason (status `failed`) and the batch goes on.

    With two threads or more the batch runs in two stages: while a worker thread aligns,
    extracts, predicts and writes one video, the main thread detects the faces of the next
    (the stages release the GIL in decoding, torch, OpenCV and the HOG histograms); torch
    gets one thread less, as in the face stage."""

    from tqdm import tqdm

    items = expand_inputs(inputs) if items is None else items  # the caller's, expanded once
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own = predictor is None  # else one already loaded (device, threads, calibration its own)
    if own:
        predictor = Predictor(model_dir, device, threads, calibration)
    default_photo = reference or predictor.reference  # the caller's predictor is left as it is
    pipelined = predictor.threads >= 2
    rows: dict[int, dict] = {}
    counts = {"done": 0, "skipped": 0, "failed": 0}
    # progress None: a bar when stderr is a terminal
    bar = tqdm(
        total=len(items),
        desc="predict",
        unit="video",
        disable=None if progress is None else not progress,
    )

    def record(
        k: int, status: str, summary: dict | None, reason: str, t0: float, known: bool = False
    ) -> None:
        vid, path, label, _, subject = items[k]
        if status == "failed" and not known:  # a new failure (else failed.json has it)
            (out / vid).mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / vid / "failed.json", {"video": str(path), "reason": reason})
            log.warning("%s", reason)
        counts[status] += 1
        seconds = time.perf_counter() - t0
        rows[k] = batch_row(
            vid,
            path,
            label,
            status,
            summary,
            reason,
            seconds,
            predictor.classes,
            predictor.task,
            subject,
        )
        write_csv_atomic(out / "summary.csv", pd.DataFrame([rows[i] for i in sorted(rows)]))
        bar.set_postfix(counts)
        bar.update()

    def failure(path: Path, err: Exception) -> str:
        if isinstance(err, VideoError):
            return str(err)
        log.error("%s: unexpected error", path, exc_info=err)  # the batch goes on
        return f"{path}: unexpected {type(err).__name__}: {err}"

    def collect(job: tuple[int, Future, float] | None) -> None:
        if job is None:
            return
        k, future, t0 = job
        try:
            record(k, "done", future.result(), "", t0)
        except Exception as err:
            record(k, "failed", None, failure(items[k][1], err), t0)

    predictor.pipelined = pipelined
    if pipelined:
        set_threads(torch_threads(predictor.threads))
    pending = None  # the video the worker finishes while the next one is detected
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="predict") as pool:
            for k, (vid, path, _, photo, _) in enumerate(items):
                photo = photo or default_photo
                folder = out / vid
                t0 = time.perf_counter()
                earlier = _read_json(folder / "summary.json")
                before = _read_json(folder / "failed.json")
                if (
                    earlier.get("video") == str(path)
                    and earlier.get("model_digest") == predictor.digest
                    and earlier.get("video_stamp") == video_stamp(path)
                    and earlier.get("reference") == photo
                ):
                    record(k, "skipped", earlier, "predicted earlier", t0)
                    continue
                if before.get("video") == str(path) and not retry_failed:
                    reason = before.get("reason", "failed earlier")
                    record(k, "failed", None, reason, t0, known=True)
                    continue
                (folder / "failed.json").unlink(missing_ok=True)
                try:
                    found = predictor.detect(path, photo)
                except Exception as err:
                    record(k, "failed", None, failure(path, err), t0)
                    continue
                if not pipelined:
                    collect((k, _done(predictor.finish, path, found, folder, photo), t0))
                    continue
                collect(pending)
                pending = (k, pool.submit(predictor.finish, path, found, folder, photo), t0)
            collect(pending)
    finally:
        predictor.pipelined = False
        set_threads(predictor.threads)
        bar.close()
        if own:  # the caller closes a predictor it passed
            predictor.close()
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    write_csv_atomic(out / "summary.csv", table)
    log.info(
        "%d videos: %d predicted, %d skipped (predicted earlier), %d failed%s; wrote %s",
        len(items),
        counts["done"],
        counts["skipped"],
        counts["failed"],
        "" if retry_failed or not counts["failed"] else " (--retry-failed retries them)",
        out / "summary.csv",
    )
    return table


def _done(fn, *args):
    """fn(*args) run here, as a finished Future (the batch's one-thread path)."""

    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as err:
        future.set_exception(err)
    return future


def _read_json(path: Path) -> dict:
    """The JSON object in `path`; {} when it is missing or unreadable (a run cut short)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
