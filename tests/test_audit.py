"""The dataset audit: a generated sheet with each problem a real dataset has, listed with its
rows; aliases, strictness and symbolic links; the gate stopping the DAG before any face job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dagtools import TINY, job_counts, snakemake

from pipeline.common import SheetError, read_csv
from pipeline.datasets.audit import audit, gate, normal_form
from pipeline.datasets.sheet import probe_videos, read_sheet
from pipeline.encode import write_video
from pipeline.video import probe

ROOT = Path(__file__).resolve().parents[1]
CV = {"method": "kfold", "k": 3}


def clip(path: Path, seed: int, n: int = 20, size=(64, 64), fps: int = 25) -> Path:
    """A small video of its own content (seeded noise over a gradient)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    frames = [(base + rng.integers(0, 50, base.shape)).astype(np.uint8) for _ in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps=fps)
    return path


def remux(src: Path, dst: Path) -> None:
    """The same stream in another container (no re-encoding), as a format conversion does."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def write_sheet(path: Path, rows: list[tuple]) -> Path:
    pd.DataFrame(rows, columns=["path", "subject", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A data root with every case, its sheet, and the audit of it: (root, videos, findings)."""
    tmp = tmp_path_factory.mktemp("messy")
    data, outside = tmp / "data", tmp / "elsewhere"
    rows, seed = [], 0
    for subject in ("s1", "s2", "s3", "s4"):
        for label in ("E01", "E02"):
            seed += 1
            rows.append((f"{subject}/{label}.mp4", subject, label))
            clip(data / rows[-1][0], seed)
    # label variants: case (stripped spaces around it), Unicode form (NFD vs NFC), full width
    clip(data / "s1/variant_case.mp4", 100)
    clip(data / "s2/variant_nfd.mp4", 101)
    clip(data / "s3/variant_wide.mp4", 102)
    rows += [("s1/variant_case.mp4", "s1", " e01 "), ("s2/variant_nfd.mp4", "s2", "Fa\u0302che\u0301"),
             ("s3/variant_wide.mp4", "s3", "\uff25\uff10\uff12")]  # fmt: skip
    clip(data / "s4/angry.mp4", 103)
    rows.append(("s4/angry.mp4", "s4", "Fâché"))  # NFC: the spelling the variant differs from
    # the same content under two subjects (a copy), and a remux under one subject
    (data / "s2/copy_of_s1_E01.mp4").write_bytes((data / "s1/E01.mp4").read_bytes())
    rows.append(("s2/copy_of_s1_E01.mp4", "s2", "E01"))
    remux(data / "s3/E02.mp4", data / "s3/E02_again.mkv")
    rows.append(("s3/E02_again.mkv", "s3", "E02"))
    # one file on two lines, written two ways
    rows.append(("./s4/E02.mp4", "s4", "E02"))
    # a thin class (one subject, 3 folds) whose subject shows nothing else
    for i in range(2):
        clip(data / f"s5/rare{i}.mp4", 200 + i)
        rows.append((f"s5/rare{i}.mp4", "s5", "rare"))
    # short (3 frames for 16-frame clips), another frame rate, another size
    clip(data / "s1/short.mp4", 300, n=3)
    clip(data / "s2/slow.mp4", 301, fps=8)
    clip(data / "s3/large.mp4", 302, size=(256, 192))
    rows += [("s1/short.mp4", "s1", "E01"), ("s2/slow.mp4", "s2", "E02"),
             ("s3/large.mp4", "s3", "E01")]  # fmt: skip
    # a symlink farm: a folder of links to files kept outside the data root
    for i in range(2):
        target = clip(outside / f"take{i}.mp4", 400 + i)
        (data / "farm").mkdir(exist_ok=True)
        (data / "farm" / f"s4_take{i}.mp4").symlink_to(target)
        rows.append((f"farm/s4_take{i}.mp4", "s4", "E01"))
    sheet = write_sheet(tmp / "sheet.csv", rows)
    table = read_sheet(sheet, root=data)
    videos, skipped = probe_videos(table, 30.0, "fail")
    assert skipped.empty
    params = {"cv": CV, "clip_length": 16, "labels": None, "label_aliases": {}}
    mapped, findings = audit(videos, params)
    return data, sheet, videos, findings


def line_of(sheet: Path, path: str) -> int:
    return int(pd.read_csv(sheet).path.tolist().index(path)) + 2


def finding(findings: pd.DataFrame, check: str, severity: str | None = None) -> pd.DataFrame:
    rows = findings[findings.check == check]
    return rows[rows.severity == severity] if severity else rows


def test_labels_that_differ_by_case_whitespace_or_unicode_form_are_errors(messy):
    _, sheet, _, findings = messy
    variants = finding(findings, "label_variant", "error")
    assert len(variants) == 3, variants.message.tolist()
    e01 = variants[variants.message.str.contains("'e01'")].iloc[0]
    assert "would be 2 classes" in e01.message and "by case" in e01.message
    assert '"e01": "E01"' in e01.message  # the alias to paste
    line = line_of(sheet, "s1/variant_case.mp4")
    assert str(line) in e01.rows.split(";") and f"'e01' (1 video, line {line})" in e01.message
    nfd = variants[variants.message.str.contains("Unicode form")]
    assert len(nfd) == 2  # 'Fâché' written decomposed; 'Ｅ０２' in full-width letters
    assert normal_form("Fa\u0302che\u0301") == normal_form("Fâché") == "fâché"
    assert normal_form("\uff25\uff10\uff12") == normal_form(" e02\u200b ") == "e02"


def test_aliases_join_variants_deliberately_and_are_recorded(messy):
    _, _, videos, _ = messy
    aliases = {"e01": "E01", "Fa\u0302che\u0301": "Fâché", "\uff25\uff10\uff12": "E02",
               "never-used": "x"}  # fmt: skip
    params = {"cv": CV, "clip_length": 16, "label_aliases": aliases}
    mapped, findings = audit(videos, params)
    assert finding(findings, "label_variant").empty
    assert sorted(mapped.label.unique()) == ["E01", "E02", "Fâché", "rare"]
    notes = finding(findings, "aliases", "info").message.tolist()
    assert any("mapped 3 rows" in n and "'e01' → 'E01' (1)" in n for n in notes), notes
    assert any("'never-used'" in n and "matched no label" in n for n in notes), notes


def test_known_labels_name_unknown_ones_and_their_case_variants(messy):
    _, _, videos, _ = messy
    aliases = {"e01": "E01", "Fa\u0302che\u0301": "Fâché", "\uff25\uff10\uff12": "E02"}
    params = {"cv": CV, "labels": ["e01", "E02", "Fâché"], "label_aliases": aliases}
    _, findings = audit(videos, params)
    variant = finding(findings, "label_variant").message.tolist()
    assert len(variant) == 1 and "as dataset.labels spells it" in variant[0]
    assert '{"E01": "e01"}' in variant[0]
    unknown = finding(findings, "unknown_label", "error")
    assert unknown.message.str.contains("'rare'").all() and len(unknown) == 1


def test_the_same_content_under_two_subjects_is_an_error_under_one_a_warning(messy):
    _, sheet, _, findings = messy
    across = finding(findings, "duplicate_content", "error")
    assert len(across) == 1
    lines = {line_of(sheet, p) for p in ("s1/E01.mp4", "s2/copy_of_s1_E01.mp4")}
    assert set(map(int, across.iloc[0].rows.split(";"))) == lines
    assert "subject s1" in across.iloc[0].message and "subject s2" in across.iloc[0].message
    within = finding(findings, "duplicate_content", "warning")
    assert len(within) == 1  # the remuxed copy: other container, the same frames
    lines = {line_of(sheet, p) for p in ("s3/E02.mp4", "s3/E02_again.mkv")}
    assert set(map(int, within.iloc[0].rows.split(";"))) == lines


def test_one_file_on_two_lines_is_an_error_naming_both(messy):
    _, sheet, _, findings = messy
    dup = finding(findings, "duplicate_path", "error")
    assert len(dup) == 1
    lines = {line_of(sheet, p) for p in ("s4/E02.mp4", "./s4/E02.mp4")}
    assert set(map(int, dup.iloc[0].rows.split(";"))) == lines


def test_thin_classes_single_class_subjects_and_outliers_are_warnings(messy):
    _, sheet, _, findings = messy
    thin = finding(findings, "thin_class", "warning").message.tolist()
    assert len(thin) == 2, thin  # variants count with the class they would be
    assert "'Fâché' comes from 2 subjects for 3 folds: at least 1 test folds" in thin[0]
    assert "'rare' comes from 1 subject for 3 folds" in thin[1]
    single = finding(findings, "single_class_subject", "warning").iloc[0]
    assert "s5 (rare)" in single.message
    short = finding(findings, "short_video", "warning").iloc[0]
    assert short.rows == str(line_of(sheet, "s1/short.mp4")) and "3 frames" in short.message
    fps = finding(findings, "fps_outlier", "warning").iloc[0]
    assert fps.rows == str(line_of(sheet, "s2/slow.mp4")) and "8 fps" in fps.message
    size = finding(findings, "size_outlier", "warning").iloc[0]
    assert size.rows == str(line_of(sheet, "s3/large.mp4")) and "256×192" in size.message


def test_a_symlink_farm_is_followed_and_listed(messy):
    data, sheet, videos, findings = messy
    links = finding(findings, "links", "info").iloc[0]
    lines = {line_of(sheet, f"farm/s4_take{i}.mp4") for i in range(2)}
    assert set(map(int, links.rows.split(";"))) == lines
    assert "2 to files outside the data root" in links.message
    linked = videos[videos.link != ""]
    assert set(linked.link) == {"outside"} and all("elsewhere" in p for p in linked.path)
    assert linked.video_id.tolist() == ["farm__s4_take0", "farm__s4_take1"]  # ids as written


def test_links_are_refused_with_the_setting_named_and_dotdot_never_leaves(messy, tmp_path):
    data, sheet, _, _ = messy
    with pytest.raises(SheetError) as err:
        read_sheet(sheet, root=data, follow_links=False)
    text = str(err.value)
    assert "3 problem(s)" in text  # the two links, and the file the sheet lists twice
    assert "'farm/s4_take0.mp4' is a symbolic link to" in text
    assert "list the same file" in text
    assert "set dataset.follow_links: true" in text
    # a link inside the root to a file inside it is no problem either way
    (data / "inner").mkdir(exist_ok=True)
    if not (data / "inner" / "s1.mp4").exists():
        (data / "inner" / "s1.mp4").symlink_to(data / "s1" / "E02.mp4")
    inner = write_sheet(tmp_path / "inner.csv", [("inner/s1.mp4", "s1", "x")])
    assert read_sheet(inner, root=data, follow_links=False).link.tolist() == ["inside"]
    # `..` is counted as written: out and back in is inside, out is out (whatever links say)
    dots = write_sheet(tmp_path / "dots.csv", [("s1/../s1/E01.mp4", "s1", "x"),
                                                ("../elsewhere/take0.mp4", "s1", "x")])  # fmt: skip
    with pytest.raises(SheetError) as err:
        read_sheet(dots, root=data)
    assert "1 problem(s)" in str(err.value)
    assert "line 3: path '../elsewhere/take0.mp4' escapes the data root" in str(err.value)


def test_every_finding_lists_rows_and_videos_of_the_sheet(messy):
    _, sheet, videos, findings = messy
    lines = set(videos.line)
    for r in findings.itertuples():
        if r.rows:
            assert set(map(int, r.rows.split(";"))) <= lines
            assert len(r.rows.split(";")) == len(r.videos.split(";"))
    order = findings.severity.map({"error": 0, "warning": 1, "info": 2}).tolist()
    assert order == sorted(order)


def test_the_gate_stops_on_errors_and_on_warnings_only_when_strict(messy):
    _, _, videos, findings = messy
    with pytest.raises(SheetError) as err:
        gate(findings, strict=False)
    text = str(err.value)
    errors = findings[findings.severity == "error"]
    assert text.count("\n  error (stops the run) ") == len(errors) == 5, text
    # the warnings are listed too (they were only counted), marked as not stopping the run
    listed = findings[findings.severity == "warning"]
    assert text.count("\n  warning ") == len(listed) > 0 and "warning (stops" not in text
    warnings = findings[findings.severity != "error"]
    passed = gate(warnings, strict=False)
    assert passed.startswith("dataset audit: 0 errors")
    assert passed.count("\n  warning ") == len(listed)
    with pytest.raises(SheetError, match="dataset.strict is true"):
        gate(warnings, strict=True)
    assert gate(warnings[warnings.severity == "info"], strict=True)


def test_the_fingerprint_is_the_frames_not_the_file(tmp_path):
    a = clip(tmp_path / "a.mp4", 1)
    (tmp_path / "b.mp4").write_bytes(a.read_bytes())
    remux(a, tmp_path / "a.mkv")
    other = clip(tmp_path / "c.mp4", 2)
    digests = {p.name: probe(p, fingerprint=True).content for p in tmp_path.iterdir()}
    assert digests["a.mp4"] == digests["b.mp4"] == digests["a.mkv"] != digests["c.mp4"]
    assert probe(other).content == ""  # only when asked
    for name, seed in (("f1", 5), ("f2", 5), ("f3", 6)):  # frame folders: the images' bytes
        folder = tmp_path / name
        folder.mkdir()
        for i, frame in enumerate(np.random.default_rng(seed).integers(0, 255, (10, 8, 8, 3))):
            from PIL import Image

            Image.fromarray(frame.astype(np.uint8)).save(folder / f"{i:03d}.png")
    folders = [probe(tmp_path / n, fingerprint=True).content for n in ("f1", "f2", "f3")]
    assert folders[0] == folders[1] != folders[2]


def test_the_cli_writes_videos_and_findings_and_the_gate_exits_nonzero(messy, tmp_path):
    data, sheet, _, _ = messy
    python = [sys.executable, "-m"]
    probed, skipped = tmp_path / "probed.csv", tmp_path / "skipped.csv"
    done = subprocess.run([*python, "pipeline.datasets.sheet", "--sheet", str(sheet),
                           "--out", str(probed), "--skipped", str(skipped), "--params",
                           f'{{"root": "{data}"}}'], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    params = (
        '{"cv": {"method": "kfold", "k": 3}, "clip_length": 16, "label_aliases": {"e01": "E01"}}'
    )
    done = subprocess.run([*python, "pipeline.datasets.audit", "run", "--videos", str(probed),
                           "--out-videos", str(tmp_path / "videos.csv"), "--out",
                           str(tmp_path / "audit.csv"), "--params", params],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    videos = read_csv(tmp_path / "videos.csv")
    assert "e01" not in set(videos.label) and len(videos) == len(read_csv(probed))
    found = read_csv(tmp_path / "audit.csv")
    assert list(found.columns) == ["check", "severity", "rows", "videos", "message"]
    assert {"duplicate_content", "duplicate_path", "thin_class", "links"} <= set(found.check)
    done = subprocess.run([*python, "pipeline.datasets.audit", "check", "--audit",
                           str(tmp_path / "audit.csv"), "--out", str(tmp_path / "ok.txt")],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode != 0 and not (tmp_path / "ok.txt").exists()
    assert "error (stops the run) duplicate_content" in done.stderr
    assert "warning size_outlier" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from pipeline.datasets import demo

    root = tmp_path_factory.mktemp("demo-videos")
    sheet = demo.generate(root, {**TINY["demo"], "subjects": 4})
    return root, sheet


def test_an_audit_error_stops_the_dag_before_any_face_job(demo_root, tmp_path):
    root, sheet = demo_root
    rows = sheet[["path", "subject", "label"]].copy()
    rows.loc[0, "label"] = rows.loc[0, "label"].upper()  # a case variant
    rows.to_csv(root / "variant.csv", index=False)
    config = {**TINY, "dataset": {"sheet": str(root / "variant.csv")}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, ROOT, "--cores", "2", "results/report.html")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "dataset audit: 1 error" in out and "label_variant" in out  # in the terminal (tee)
    # and again as the run's last lines, not buried above Snakemake's error block
    tail = done.stderr[done.stderr.rindex("Exiting because a job execution failed") :]
    assert "The dataset audit stopped the run before any face job" in tail
    assert "error (stops the run) label_variant" in tail
    assert not (tmp_path / "results/faces").exists()
    found = read_csv(tmp_path / "results/qc/audit.csv")
    assert found.check.tolist()[0] == "label_variant"
    variant = rows.loc[0, "label"]
    assert found.rows.iloc[0] == ";".join(
        str(i + 2) for i in rows.index[rows.label.str.lower() == variant.lower()]
    )
    assert f"{variant!r} (1 video, line 2)" in found.message.iloc[0]
    # mapped deliberately, the same run goes on to the face stage
    config["dataset"]["label_aliases"] = {rows.loc[0, "label"]: sheet.loc[0, "label"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, ROOT, "--cores", "2", "results/qc/audit_passed.txt")
    assert done.returncode == 0, done.stderr[-3000:]
    dry = snakemake(tmp_path, ROOT, "-n", "results/report.html")
    assert job_counts(dry.stdout + dry.stderr)["detect_faces"] == 2


def test_label_settings_and_strict_rerun_no_video_stage(run, tmp_path):
    workdir, root = run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["dataset"] = {"strict": True}
    changed = tmp_path / "strict.yaml"
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(changed))
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout + dry.stderr) == {"audit_gate": 1, "runtime": 1, "report": 1}
    videos = read_csv(workdir / "results/dataset/videos.csv")
    label = sorted(videos.label.unique())[0]
    config["dataset"] = {"label_aliases": {label: label.upper()}}
    changed.write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, root, "results/report.html", "-n", "--configfile", str(changed))
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["audit"] == 1 and counts["window_clips"] == 1 and counts["train"] > 0
    assert not {"dataset", "detect_faces", "frontalize", "extract_features"} & set(counts)


def test_the_tiny_run_records_its_audit_in_the_report(run):
    workdir, _ = run
    found = read_csv(workdir / "results/qc/audit.csv")
    assert not (found.severity == "error").any()
    html = (workdir / "results/report.html").read_text()
    assert "<h2>Dataset audit</h2>" in html
    assert (workdir / "results/qc/audit_passed.txt").read_text().startswith("dataset audit: 0")
    assert os.path.exists(workdir / "logs/audit.log")


def test_one_video_of_two_people_is_two_rows_with_their_photos_not_a_duplicate(tmp_path):
    from PIL import Image

    clip(tmp_path / "two.mp4", 1)
    (tmp_path / "copy.mp4").write_bytes((tmp_path / "two.mp4").read_bytes())
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), 90).save(tmp_path / name)
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label,reference\n"
        "two.mp4,pa,x,a.png\n"
        "two.mp4,pb,y,b.png\n"  # the other person in the same video
        "copy.mp4,pc,x,a.png\n"  # a copy under a third subject, following the first again
    )
    videos, _ = probe_videos(read_sheet(tmp_path / "sheet.csv"), 30.0, "fail")
    _, found = audit(videos, {"cv": {"method": "loso"}})
    assert finding(found, "duplicate_path").empty
    assert finding(found, "several_persons", "info").rows.tolist() == ["2;3"]
    copy = finding(found, "duplicate_content", "error")  # pa and pc: one photo, two subjects
    assert len(copy) == 1 and set(copy.rows.iloc[0].split(";")) == {"2", "3", "4"}


def test_number_like_labels_and_subjects_written_two_ways_are_errors(tmp_path):
    """A spreadsheet's `1`, `01`, `1.0` were three classes, and subjects `7`, `07` two people
    (one person on both sides of a fold), with nothing but "thin class" warnings."""
    rows = [("a.mp4", "7", "1"), ("b.mp4", "07", "01"), ("c.mp4", "7", "1.0"),
            ("d.mp4", "8", "2"), ("e.mp4", "8", "2"), ("f.mp4", "9", "1")]  # fmt: skip
    for seed, (name, _, _) in enumerate(rows):
        clip(tmp_path / name, seed)
    sheet = write_sheet(tmp_path / "sheet.csv", rows)
    table = pd.read_csv(sheet, dtype=str)
    assert table.label.tolist()[:3] == ["1", "01", "1.0"]  # as written, not as numbers
    videos, _ = probe_videos(read_sheet(sheet), 30.0, "fail")
    _, found = audit(videos, {"cv": {"method": "loso"}})
    labels = finding(found, "label_variant", "error")
    assert len(labels) == 1 and labels.rows.iloc[0] == "2;3;4;7"
    message = labels.message.iloc[0]
    assert "would be 3 classes" in message and "the way the number is written" in message
    assert '"01": "1"' in message and '"1.0": "1"' in message  # the aliases to paste
    subjects = finding(found, "subject_variant", "error")
    assert len(subjects) == 1 and subjects.rows.iloc[0] == "2;3;4"
    assert "'07' (1 video, line 3)" in subjects.message.iloc[0]
    assert "both sides of a fold" in subjects.message.iloc[0]
    assert normal_form("S01") != normal_form("S1")  # letters and digits: not a number
    assert normal_form("10") != normal_form("1") and normal_form("1.50") == normal_form("1.5")
