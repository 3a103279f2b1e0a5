"""Dataset adapters: turn a public dataset's own folder layout into a label sheet.

    python -m pipeline.datasets.adapters --format ckplus --root /data/CK+ --out sheet.csv

The sheet (path relative to the root, subject, label; video_id where the layout names
videos well, else derived from the path; `split` or `official_fold` where the dataset has
them) then goes through the same validation as a hand-written one. Labels are mapped to one vocabulary: anger, contempt, disgust, fear, happiness,
neutral, sadness, surprise. Files that do not fit the layout are listed in the log, never
silently dropped; a root with nothing usable is an error naming what was expected.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pipeline.common import SheetError, run_main, setup_logging, write_csv_atomic
from pipeline.datasets.sheet import derive_id
from pipeline.video import natural_key

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v")
CKPLUS_LABELS = {
    0: "neutral",
    1: "anger",
    2: "contempt",
    3: "disgust",
    4: "fear",
    5: "happiness",
    6: "sadness",
    7: "surprise",
}
DFEW_LABELS = {
    1: "happiness",
    2: "sadness",
    3: "neutral",
    4: "anger",
    5: "surprise",
    6: "disgust",
    7: "fear",
}
NAMES = {
    "angry": "anger",
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "happiness": "happiness",
    "neutral": "neutral",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "contempt": "contempt",
}


def _sorted(paths) -> list[Path]:
    return sorted(paths, key=lambda p: natural_key(str(p)))


def _videos(folder: Path) -> list[Path]:
    return _sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )


def _require(root: Path, *parts: str, what: str) -> Path:
    path = root.joinpath(*parts)
    if not path.is_dir():
        raise SheetError(f"{root}: no {'/'.join(parts)}/ folder; {what}")
    return path


def ckplus(root: Path) -> pd.DataFrame:
    """CK+: cohn-kanade-images/Sxxx/yyy/*.png frame folders, labels in Emotion/Sxxx/yyy/*_emotion.txt.

    Only the 327 labelled sequences are used (neutral → apex, 8 classes with contempt).
    """
    images = _require(
        root, "cohn-kanade-images", what="expected the CK+ layout cohn-kanade-images/ + Emotion/"
    )
    labels = _require(
        root, "Emotion", what="expected the CK+ layout cohn-kanade-images/ + Emotion/"
    )
    rows = []
    for file in _sorted(labels.glob("*/*/*_emotion.txt")):
        subject, sequence = file.parent.parent.name, file.parent.name
        try:
            code = int(float(file.read_text().split()[0]))
            label = CKPLUS_LABELS[code]
        except (ValueError, IndexError, KeyError):
            log.warning("%s: not a CK+ emotion code (0-7); sequence left out", file)
            continue
        folder = images / subject / sequence
        if not folder.is_dir():
            log.warning("%s: label without frames (%s missing); left out", file, folder)
            continue
        rows.append(
            {
                "path": f"cohn-kanade-images/{subject}/{sequence}",
                "subject": subject,
                "label": label,
                "video_id": f"{subject}_{sequence}",
            }
        )
    unlabelled = sum(1 for _ in images.glob("*/*")) - len(rows)
    log.info("CK+: %d labelled sequences, %d without a label left out", len(rows), unlabelled)
    return pd.DataFrame(rows)


def enterface(root: Path) -> pd.DataFrame:
    """eNTERFACE'05: subject N/<emotion>/sentence M/*.avi (some subjects have no sentence level)."""
    rows = []
    for file in _videos(root):
        parts = file.relative_to(root).parts
        subject = next(
            (m[1] for p in parts if (m := re.fullmatch(r"subject\s*(\d+)", p, re.I))), None
        )
        label = next((NAMES[p.lower()] for p in parts[:-1] if p.lower() in NAMES), None)
        if subject is None or label is None:
            log.warning("%s: no 'subject N' or emotion folder in its path; left out", file)
            continue
        # no video_id: the sheet derives a unique one from the path
        rows.append(
            {
                "path": file.relative_to(root).as_posix(),
                "subject": f"subject{int(subject):02d}",
                "label": label,
            }
        )
    return pd.DataFrame(rows)


def afew(root: Path) -> pd.DataFrame:
    """AFEW: Train_AFEW|Val_AFEW/<Emotion>/*.avi. AFEW has no subject ids: each clip is its own group."""
    rows = []
    for split_dir in _sorted(p for p in root.iterdir() if p.is_dir()):
        split = (
            "train"
            if split_dir.name.lower().startswith("train")
            else "val"
            if split_dir.name.lower().startswith("val")
            else None
        )
        if split is None:
            log.warning("%s: neither Train* nor Val*; left out", split_dir)
            continue
        for emotion_dir in _sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = NAMES.get(emotion_dir.name.lower())
            if label is None:
                log.warning("%s: unknown emotion folder; left out", emotion_dir)
                continue
            for file in _videos(emotion_dir):
                vid = f"{split}_{file.stem}"
                rows.append(
                    {
                        "path": file.relative_to(root).as_posix(),
                        "subject": vid,
                        "label": label,
                        "video_id": vid,
                        "split": split,
                    }
                )
    return pd.DataFrame(rows)


def dfew(root: Path) -> pd.DataFrame:
    """DFEW: clips/<name>/ frame folders (or clips/<name>.mp4) and labels/set_K/{train,test}.csv
    (columns video_name,label; 1 happy … 7 fear, 0 = no single label, left out). A clip's
    `official_fold` is the K-1 of the set whose test.csv lists it. No subject ids: each clip is
    its own group.
    """
    clips = _require(root, "clips", what="expected DFEW clips/<name>/ (frames) or clips/<name>.mp4")
    sets = _sorted(
        _require(root, "labels", what="expected DFEW labels/set_K/{train,test}.csv").glob("set_*")
    )
    labels: dict[str, int] = {}
    fold: dict[str, int] = {}
    for k, folder in enumerate(sets):
        for part in ("train", "test"):
            file = folder / f"{part}.csv"
            if not file.is_file():
                raise SheetError(
                    f"{file}: missing; every labels/set_K needs train.csv and test.csv"
                )
            with file.open(newline="", encoding="utf-8-sig") as f:
                for row in csv.DictReader(f):
                    name = str(row["video_name"]).strip().zfill(5)
                    labels[name] = int(float(row["label"]))
                    if part == "test":
                        fold[name] = k
    rows = []
    for name in sorted(labels):
        if labels[name] not in DFEW_LABELS:
            continue
        path = clips / name
        if not path.exists():
            matches = _sorted(
                p for p in clips.glob(f"{name}.*") if p.suffix.lower() in VIDEO_SUFFIXES
            )
            if not matches:
                log.warning("%s: labelled but no frames or video under clips/; left out", name)
                continue
            path = matches[0]
        rows.append(
            {
                "path": path.relative_to(root).as_posix(),
                "subject": name,
                "label": DFEW_LABELS[labels[name]],
                "video_id": name,
                "official_fold": fold.get(name, -1),
            }
        )
    return pd.DataFrame(rows)


def _by_stem(files: list[Path], what: str) -> dict[str, Path]:
    """stem → file; a stem found twice is an error naming both files."""
    found: dict[str, Path] = {}
    for f in files:
        if f.stem in found:
            raise SheetError(f"{f}: a second {what} named {f.stem!r} (also {found[f.stem]})")
        found[f.stem] = f
    return found


def _paired(root: Path, videos: dict[str, Path], notes: dict[str, Path], what: str) -> list:
    """(stem, video, annotation) of the videos with an annotation file; the rest logged."""
    for stem in sorted(set(notes) - set(videos)):
        log.warning("%s: %s without a video named %s.*; left out", notes[stem], what, stem)
    for stem in sorted(set(videos) - set(notes)):
        log.warning("%s: no %s file; left out", videos[stem], what)
    return [(stem, videos[stem], notes[stem]) for stem in sorted(set(videos) & set(notes))]


def send(root: Path) -> pd.DataFrame:
    """SEND-style (Stanford Emotional Narratives): videos/**/<ID>_<video>.mp4 and
    ratings/**/<ID>_<video>.csv (a time column in seconds and the rating, e.g. `time,rating`
    or SEND's `time,evaluatorWeightedEstimate`, one row every 0.5 s), paired by name; the
    subject is the part before the first `_`. For task regress (labels are `-`)."""
    _require(root, "videos", what="expected the SEND-style layout videos/ + ratings/")
    ratings = _require(root, "ratings", what="expected the SEND-style layout videos/ + ratings/")
    videos = _by_stem(_videos(root / "videos"), "video")
    notes = _by_stem(_sorted(ratings.rglob("*.csv")), "ratings file")
    return pd.DataFrame(
        [
            {
                "path": v.relative_to(root).as_posix(),
                "subject": stem.split("_")[0],
                "label": "-",
                "video_id": derive_video_id(stem),
                "annotation": a.relative_to(root).as_posix(),
            }
            for stem, v, a in _paired(root, videos, notes, "ratings")
        ]
    )


def affwild2(root: Path) -> pd.DataFrame:
    """Aff-Wild2-style: videos/<name>.mp4 (or .avi) and annotations/**/<Train|Validation…>/
    <name>.txt (header `valence,arousal`, then one line per frame, -5 unlabelled: set
    dataset.annotation `missing: [-5]` and `row_is_frame: true`). Each video is its own
    subject; `split` is train or val from the annotation folder. Files named <name>_left /
    <name>_right follow one of two people in <name>: left out with a warning (give each a
    `reference` photo in a sheet instead). For task regress (labels are `-`)."""
    _require(root, "videos", what="expected the Aff-Wild2 layout videos/ + annotations/")
    notes_root = _require(
        root, "annotations", what="expected the Aff-Wild2 layout videos/ + annotations/"
    )
    videos = _by_stem(_videos(root / "videos"), "video")
    notes = {}
    for f in _by_stem(_sorted(notes_root.rglob("*.txt")), "annotation file").values():
        if re.search(r"_(left|right)$", f.stem) and f.stem not in videos:
            log.warning("%s: one of two people in a video; left out (see the docstring)", f)
            continue
        notes[f.stem] = f
    rows = []
    for stem, v, a in _paired(root, videos, notes, "annotation"):
        folder = a.parent.name.lower()
        split = "train" if folder.startswith("train") else "val" if folder.startswith("val") else ""
        rows.append(
            {
                "path": v.relative_to(root).as_posix(),
                "subject": stem,
                "label": "-",
                "video_id": derive_video_id(stem),
                "annotation": a.relative_to(root).as_posix(),
                **({"split": split} if split else {}),
            }
        )
    return pd.DataFrame(rows)


def derive_video_id(stem: str) -> str:
    return derive_id(stem)


ADAPTERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "ckplus": ckplus,
    "enterface": enterface,
    "afew": afew,
    "dfew": dfew,
    "send": send,
    "affwild2": affwild2,
}


def build_sheet(fmt: str, root: str | Path) -> pd.DataFrame:
    """The sheet of the dataset at `root` in layout `fmt` (one of ADAPTERS)."""
    if fmt not in ADAPTERS:
        raise SheetError(f"unknown dataset.format {fmt!r}; known: sheet, {', '.join(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise SheetError(
            f"dataset.root {str(root)!r} is not a folder; point it at the {fmt} dataset"
        )
    sheet = ADAPTERS[fmt](root)
    if sheet.empty:
        raise SheetError(
            f"{root}: no labelled video found in the {fmt} layout (see docs/data.md, 'Public datasets')"
        )
    return sheet


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Write the label sheet of a public dataset.")
    ap.add_argument("--format", required=True, choices=sorted(ADAPTERS))
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    sheet = build_sheet(args.format, args.root)
    write_csv_atomic(args.out, sheet)
    log.info(
        "%s: %d videos, %d subjects, labels %s",
        args.format,
        len(sheet),
        sheet.subject.nunique(),
        dict(sheet.label.value_counts()),
    )


if __name__ == "__main__":
    run_main(main)
