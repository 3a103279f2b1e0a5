"""The whole DAG on the good demo videos plus the bad-input corpus (tests/robustness/corpus.py).

Every bad video must end as a recorded skip (results/qc/skipped.csv: video, stage, reason,
also shown in the report) or go through every stage, and no case may cost another video its
results. With `on_error: fail` the first bad video stops the run with its file named.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import pytest
import yaml
from corpus import CASES, build
from dagtools import snakemake

from pipeline.common import read_csv
from pipeline.datasets import demo
from pipeline.datasets.sheet import derive_id

CONFIG = {
    "shards": 2,
    "face": {"min_face_size": 20},
    "frontalize": {"method": "similarity"},
    "cv": {"k": 2},
    "backbones": {"hog": {"size": 48, "cell": 8}},
    "models": {"meanpool": {"backbones": ["hog"]}},
}
SUBJECTS = ["s01", "s02", "s03", "s04"]
ROOT = Path(__file__).resolve().parents[2]


def write_sheet(root: Path, rows: list[dict]) -> Path:
    sheet = root / "sheet.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "subject", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return sheet


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """(workdir, data root): the DAG run on 4 demo subjects + every corpus case."""
    data = tmp_path_factory.mktemp("corpus")
    good = demo.generate(
        data / "demo",
        {"subjects": 4, "repetitions": 1, "min_frames": 18, "max_frames": 24,
         "width": 160, "height": 120},
    )  # fmt: skip
    rows = [{"path": f"demo/{r['path']}", "subject": r["subject"], "label": r["label"]}
            for r in good.to_dict("records")]  # fmt: skip
    for i, case in enumerate(build(data)):
        case.subject = SUBJECTS[i % len(SUBJECTS)]
        rows.append({"path": case.path, "subject": case.subject, "label": case.label})
    sheet = write_sheet(data, rows)
    workdir = tmp_path_factory.mktemp("corpus-dag")
    config = {**CONFIG, "dataset": {"sheet": str(sheet)}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir, ROOT, "--cores", "2", "results/report.html")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir, data, good


def case_id(case) -> str:
    return derive_id(case.path)


def test_the_corpus_has_at_least_twenty_cases():
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c.outcome == "skipped"], ids=lambda c: c.name)
def test_bad_videos_are_recorded_skips(corpus_run, case):
    workdir, _, _ = corpus_run
    skipped = read_csv(workdir / "results/qc/skipped.csv").set_index("video_id")
    vid = case_id(case)
    assert vid in skipped.index, f"{case.name}: not in skipped.csv"
    assert skipped.stage[vid] == case.stage
    assert case.reason in skipped.reason[vid]
    html = (workdir / "results/report.html").read_text()
    assert vid in html  # the report's skipped table lists it


@pytest.mark.parametrize("case", [c for c in CASES if c.outcome == "kept"], ids=lambda c: c.name)
def test_odd_videos_go_through_every_stage(corpus_run, case):
    workdir, _, _ = corpus_run
    r = workdir / "results"
    vid = case_id(case)
    videos = read_csv(r / "dataset/videos.csv").set_index("video_id")
    clips = read_csv(r / "clips.csv")
    folds = read_csv(r / "folds.csv").set_index("video_id")
    assert vid in videos.index and vid in folds.index, f"{case.name}: dropped"
    n_clips = int((clips.video_id == vid).sum())
    assert n_clips >= 1
    faces = aligned = None
    for shard in (0, 1):
        with h5py.File(r / f"faces/shard-{shard}.h5") as f:
            if vid in f:
                g = f[vid]
                faces = {k: g[k][:] for k in ("valid", "n_faces")} | dict(g.attrs)
        with h5py.File(r / f"features/hog/shard-{shard}.h5") as f:
            if vid in f:
                aligned = f[vid].shape
    assert faces is not None and aligned is not None, f"{case.name}: missing faces/features"
    pred = read_csv(r / f"models/meanpool/hog/fold{folds.fold[vid]}/predictions.csv")
    assert (pred.video_id == vid).sum() == n_clips
    c = case.checks
    if "frames" in c:
        assert len(faces["valid"]) == c["frames"] == aligned[0]
    if "clips" in c:
        assert n_clips == c["clips"]
    if "cropped" in c:
        assert bool(faces["cropped"]) is c["cropped"]
    if "faces" in c:
        assert faces["valid"].mean() >= c["faces"]
    if "more_than_one_face" in c:
        assert (faces["n_faces"] > 1).any()
    if "rotation" in c:
        assert int(videos.rotation[vid]) == c["rotation"]
    if "size" in c:
        assert (int(videos.width[vid]), int(videos.height[vid])) == c["size"]
    if "first_face" in c:  # the face track starts where the face appears
        first = int(faces["valid"].argmax())
        assert not faces["valid"][:first].any() and faces["valid"][first:].all()
        assert abs(first - c["first_face"]) <= 1


def test_no_case_costs_another_video_its_results(corpus_run):
    workdir, _, good = corpus_run
    folds = read_csv(workdir / "results/folds.csv")
    expected = {derive_id(f"demo/{p}") for p in good.path}
    expected |= {case_id(c) for c in CASES if c.outcome == "kept"}
    assert set(folds.video_id) == expected
    metrics = json.loads((workdir / "results/metrics/meanpool_hog.json").read_text())
    assert metrics["n_videos"] == len(expected)


def test_hostile_names_run_nothing_and_are_escaped(corpus_run):
    workdir, data, _ = corpus_run
    for place in (workdir, data, data / "names", Path.cwd()):
        assert not (place / "PWNED").exists()
    html = (workdir / "results/report.html").read_text()
    assert "<script>alert" not in html


def test_on_error_fail_stops_at_the_first_bad_video_and_names_it(tmp_path):
    case = next(c for c in CASES if c.name == "zero-byte file")
    case.make(tmp_path / case.path)
    sheet = write_sheet(tmp_path, [{"path": case.path, "subject": "s1", "label": "x"}])
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.datasets.sheet", "--sheet", str(sheet),
         "--out", str(tmp_path / "videos.csv"), "--skipped", str(tmp_path / "skipped.csv"),
         "--on-error", "fail"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "zero.mp4: file is empty" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "videos.csv").exists()


SHEET_PROBLEMS = (
    "path,subject,label,video_id\n"
    "demo/videos/s01_anger_1.mp4,s01,anger,a\n"  # line 2: fine
    "demo/videos/nowhere.mp4,s01,anger,\n"  # line 3: missing file
    "demo/videos/s01_anger_1.mp4,,anger,b\n"  # line 4: missing subject
    "demo/videos/s01_anger_1.mp4,s02,bored,c\n"  # line 5: unknown label, the file again
    "demo/videos/s01_anger_1.mp4,s02,anger,a\n"  # line 6: duplicate id, the file again
    "../../etc/passwd,s03,anger,d\n"  # line 7: escapes the data root
)


def test_every_sheet_problem_is_listed_at_once_before_any_video_is_opened(tmp_path):
    """The DAG stops in the `dataset` job, which lists all problems of single rows with line
    numbers and, with them, the file listed twice (the audit's check: it was said only on the
    next run); with those fixed, in the audit, which lists what only the rows together show
    (the unknown label, the file twice); no face job starts either time."""
    good = demo.generate(
        tmp_path / "demo",
        {
            "subjects": 2,
            "repetitions": 1,
            "min_frames": 16,
            "max_frames": 16,
            "width": 160,
            "height": 120,
        },
    )
    assert len(good)
    (tmp_path / "sheet.csv").write_text(SHEET_PROBLEMS)
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = {
        **CONFIG,
        "dataset": {"sheet": str(tmp_path / "sheet.csv"), "labels": list(demo.EMOTIONS)},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir, ROOT, "--cores", "1", "results/report.html")
    assert done.returncode != 0
    log = (workdir / "logs/dataset.log").read_text()
    for line in (
        "5 problem(s)",
        "line 3: 'demo/videos/nowhere.mp4' does not exist",
        "line 4: empty subject",
        "line 6: duplicate video_id 'a' (also line 2)",
        "line 7: path '../../etc/passwd' escapes the data root",
        "lines 2, 5 list the same file",
    ):
        assert line in log, line
    assert not (workdir / "results/faces").exists()  # no heavy work started
    lines = SHEET_PROBLEMS.splitlines()
    (tmp_path / "sheet.csv").write_text("\n".join([lines[0], lines[1], lines[4]]) + "\n")
    done = snakemake(workdir, ROOT, "--cores", "1", "results/report.html")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "dataset audit: 2 errors" in out
    assert "label 'bored' (1 video) is not in dataset.labels" in out
    assert "lines 2, 3 list the same file" in out
    assert not (workdir / "results/faces").exists()


def test_the_audit_lists_the_odd_videos_and_lets_them_through(corpus_run):
    workdir, _, _ = corpus_run
    found = read_csv(workdir / "results/qc/audit.csv")
    assert not (found.severity == "error").any()
    short = found[found.check == "short_video"].videos.iloc[0].split(";")
    assert case_id(next(c for c in CASES if c.name == "1-frame video")) in short
    sizes = found[found.check == "size_outlier"].videos.iloc[0].split(";")
    assert case_id(next(c for c in CASES if c.name == "4K frames")) in sizes


@pytest.mark.parametrize(
    ("content", "encoding", "message"),
    [
        ("path|subject|label\nv.mp4|s1|anger\n", "utf-8", "missing column"),
        ("path,subject,label\nvidéo.mp4,s1,colère\n", "latin-1", "UTF-8"),
    ],
    ids=["wrong delimiter", "wrong encoding"],
)
def test_a_sheet_in_the_wrong_format_is_a_clear_error(tmp_path, content, encoding, message):
    from pipeline.common import SheetError
    from pipeline.datasets.sheet import read_sheet

    (tmp_path / "sheet.csv").write_bytes(content.encode(encoding))
    with pytest.raises(SheetError, match=message):
        read_sheet(tmp_path / "sheet.csv")


def test_a_long_video_keeps_memory_flat(tmp_path):
    """Faces and alignment stream frames: 10× the frames costs only the per-frame metadata
    (boxes, landmarks, pose: ~1 KB a frame), never the frames (57 KB each here)."""
    import tracemalloc

    from corpus import face_frames

    from pipeline.encode import write_video
    from pipeline.faces.detector import Detector
    from pipeline.faces.stage import detect_video
    from pipeline.frontalize import Frontalizer, crops_dataset, frontalize_video

    detector = Detector({"min_face_size": 20})
    frames = face_frames(40)

    def stage(n: int) -> int:
        path = tmp_path / f"long{n}.mp4"
        write_video(path, (frames[i % len(frames)] for i in range(n)))
        tracemalloc.start()
        arrays = detect_video(detector, str(path), n)
        with h5py.File(tmp_path / f"aligned{n}.h5", "w") as out:
            det = out.create_group("faces")
            for key, values in arrays.items():
                if key != "cropped":
                    det.create_dataset(key, data=values)
            det.attrs["cropped"] = False
            decode = {"target_fps": None, "folder_fps": 30.0}
            allocate = partial(crops_dataset, out.create_group("aligned"), "none")
            frontalize_video(str(path), det, 112, "similarity", Frontalizer(112), decode, allocate)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert arrays["valid"].all()
        return peak

    stage(20)  # load the networks first
    short, long = stage(40), stage(400)
    per_frame = (long - short) / 360
    assert per_frame < 4_000, f"{per_frame:.0f} bytes per frame: frames are being kept"
    assert long < 2 * short + 2_000_000
