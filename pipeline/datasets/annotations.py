"""Labels over time: per-video annotation files of continuous dimensions (valence, arousal,
intensity…), read and checked before anything else runs.

    python -m pipeline.datasets.annotations ratings/*.csv --range -1 1

An annotation file is a CSV (comma, semicolon or tab; UTF-8) with a header line: one time
column, either `time` / `time_s` / `seconds` / `timestamp` in seconds from the start of the
video or `frame` / `frame_index` (0 = the first frame of the source video; turned into
seconds with the video's own frame rate), and one column per dimension. Several annotators'
columns are just more dimensions; average them before, or name the one to use. An empty
cell, or a value listed as `missing` (Aff-Wild2 writes -5), is unlabelled: it stays a gap.
With `row_is_frame` a file without a time column gives one row per frame from frame 0
(Aff-Wild2's `valence,arousal` files).

Every problem of every file is collected and reported at once, with file and line: a missing
or unreadable file, no time column, a named dimension that is not there, a cell that is not
a number, time that does not increase, a value outside `range`. The values are then carried
onto each video's frame times by `pipeline.continuous.resample` (linear between samples at
most `max_gap` seconds apart, gaps recorded, never invented).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common import SheetError, run_main, setup_logging

SECONDS = ("time", "time_s", "seconds", "timestamp")
FRAMES = ("frame", "frame_index")


@dataclass
class Annotation:
    """One file's samples: `times` (N,) in seconds, or frame indices when `unit` is "frame",
    and `values` (N, D) float64 with NaN where unlabelled."""

    path: str
    unit: str  # "seconds" | "frame"
    times: np.ndarray
    values: np.ndarray
    dimensions: list[str]

    def seconds(self, fps: float | None = None) -> np.ndarray:
        """The sample times in seconds (frame indices need the source video's `fps`)."""
        if self.unit == "seconds":
            return self.times
        if not fps or fps <= 0:
            raise SheetError(f"{self.path}: frame-indexed labels need the video's frame rate")
        return self.times / float(fps)


def _number(cell: str) -> float | None:
    """A cell's value (NaN when empty), or None when it is not a number."""
    cell = cell.strip()
    if not cell:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return None


def read_annotation(
    path: str | Path,
    dimensions: Sequence[str] | None = None,
    value_range: Sequence[float] | None = None,
    missing: Sequence[float] = (),
    row_is_frame: bool = False,
) -> tuple[Annotation | None, list[str]]:
    """Read one annotation file: (the annotation, or None when it cannot be used; every
    problem found, each naming the file and, where it has one, the line)."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        return None, [f"{name}: annotation file not found"]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, [f"{name}: not UTF-8 (byte {err.start}); save it as UTF-8 CSV"]
    except OSError as err:
        return None, [f"{name}: cannot be read ({err.strerror})"]
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return None, [f"{name}: empty; expected a header line such as `time,valence`"]
    delimiter = max(",;\t", key=lines[0].count)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    time_col = next((i for i, h in enumerate(lower) if h in SECONDS + FRAMES), None)
    if time_col is None and row_is_frame:  # one row per frame: the row number is the frame
        rows = [[str(k), *r] if any(c.strip() for c in r) else r for k, r in enumerate(rows[1:])]
        rows.insert(0, ["frame", *header])
        header, lower, time_col = ["frame", *header], ["frame", *lower], 0
    if time_col is None:
        return None, [
            f"{name}: line 1: no time column in {header!r}; name one "
            f"{' / '.join(SECONDS)} (seconds) or {' / '.join(FRAMES)} (frame index), or set "
            "row_is_frame (one row per frame)"
        ]
    unit = "frame" if lower[time_col] in FRAMES else "seconds"
    others = [h for i, h in enumerate(header) if i != time_col and h]
    wanted = list(dimensions) if dimensions else others
    absent = [d for d in wanted if d not in header]
    if absent or not wanted:
        return None, [
            f"{name}: line 1: no column {', '.join(map(repr, absent))} (columns: "
            f"{', '.join(header)})"
            if absent
            else f"{name}: line 1: no value column beside the time column"
        ]
    columns = [header.index(d) for d in wanted]
    problems: list[str] = []
    times, values = [], []
    low, high = (float(value_range[0]), float(value_range[1])) if value_range else (None, None)
    gone = {float(m) for m in missing}
    previous = None
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) < len(header):
            problems.append(f"{name}: line {line}: {len(row)} cells, the header has {len(header)}")
            continue
        t = _number(row[time_col])
        if t is None or math.isnan(t):
            problems.append(f"{name}: line {line}: time {row[time_col].strip()!r} is not a number")
            continue
        if previous is not None and t <= previous:
            problems.append(
                f"{name}: line {line}: time {t:g} does not increase (previous {previous:g}); "
                "sort the rows by time, one row per instant"
            )
        previous = t
        sample = []
        for d, c in zip(wanted, columns, strict=True):
            v = _number(row[c])
            if v is None:
                problems.append(f"{name}: line {line}: {d} {row[c].strip()!r} is not a number")
                v = math.nan
            elif v in gone:
                v = math.nan
            elif low is not None and not math.isnan(v) and not low <= v <= high:
                problems.append(
                    f"{name}: line {line}: {d} {v:g} is outside the range [{low:g}, {high:g}]"
                )
            sample.append(v)
        times.append(t)
        values.append(sample)
    if not times and not problems:
        problems.append(f"{name}: a header but no rows")
    if problems:
        return None, problems
    return (
        Annotation(
            name,
            unit,
            np.asarray(times),
            np.asarray(values, np.float64).reshape(-1, len(wanted)),
            wanted,
        ),
        [],
    )


def read_all(
    paths: Sequence[str | Path],
    dimensions: Sequence[str] | None = None,
    value_range: Sequence[float] | None = None,
    missing: Sequence[float] = (),
    row_is_frame: bool = False,
) -> list[Annotation]:
    """Read every file; raise SheetError listing every problem of every file at once (files
    with different dimensions included)."""
    found, problems = [], []
    for path in paths:
        annotation, issues = read_annotation(path, dimensions, value_range, missing, row_is_frame)
        found.append(annotation)
        problems += issues
    first = found[0].dimensions if found and found[0] is not None else None
    for annotation in found:
        if annotation is not None and annotation.dimensions != first:
            problems.append(
                f"{annotation.path}: line 1: columns {', '.join(annotation.dimensions)} differ "
                f"from {', '.join(first)} of {found[0].path}; give every file the same "
                "dimensions, or name them in dataset.annotation.dimensions"
            )
    if problems:
        listing = "\n  ".join(problems)
        raise SheetError(f"{len(problems)} problem(s) in the annotation files:\n  {listing}")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.datasets.annotations",
        description="Check annotation files of continuous labels; list every problem.",
    )
    ap.add_argument("files", nargs="+", help="annotation CSV files")
    ap.add_argument("--dimensions", nargs="+", help="the columns to use (default: all)")
    ap.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"), dest="value_range")
    ap.add_argument("--missing", nargs="+", type=float, default=[], help="values = unlabelled")
    ap.add_argument("--row-is-frame", action="store_true", help="no time column: row k = frame k")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    found = read_all(args.files, args.dimensions, args.value_range, args.missing, args.row_is_frame)
    for a in found:
        labelled = np.isfinite(a.values).mean(0)
        span = f"{a.times[0]:g}–{a.times[-1]:g} {'s' if a.unit == 'seconds' else 'frames'}"
        cover = ", ".join(
            f"{d} {100 * f:.0f} %" for d, f in zip(a.dimensions, labelled, strict=True)
        )
        print(f"{a.path}: {len(a.times)} samples, {span}; labelled: {cover}")


if __name__ == "__main__":
    run_main(main)
