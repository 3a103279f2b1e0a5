import pytest

from pipeline.common import SheetError
from pipeline.datasets.sheet import derive_id, probe_videos, read_sheet
from pipeline.encode import write_video


def make_video(path, n=5):
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (np.full((32, 32, 3), 10 * i, np.uint8) for i in range(n)), fps=25)


def test_all_problems_are_listed_with_line_numbers(tmp_path):
    """Every problem of one sheet in one run: the file listed twice (the audit's check) was
    said only on the run after the other four were fixed."""
    make_video(tmp_path / "ok.mp4")
    make_video(tmp_path / "other.mp4", n=6)
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label\n"
        "ok.mp4,s1,happy\n"
        "missing.mp4,s2,happy\n"
        "other.mp4,,sad\n"
        "other.mp4,s3,\n"
        "../outside.mp4,s3,sad\n"
        "ok.mp4,s4,bored\n"
    )
    with pytest.raises(SheetError) as err:
        read_sheet(tmp_path / "sheet.csv")
    text = str(err.value)
    assert "5 problem(s)" in text
    assert "line 3: 'missing.mp4' does not exist" in text
    assert "line 4: empty subject" in text
    assert "line 5: empty label" in text
    assert "line 6: path '../outside.mp4' escapes the data root" in text
    assert "lines 2, 7 list the same file" in text
    # labels are the audit's (tests/test_audit.py): it sees them all, with the config's aliases
    assert "bored" not in text


def test_a_file_listed_twice_or_three_times_reaches_the_audit_with_its_lines(tmp_path):
    from pipeline.datasets.audit import audit

    make_video(tmp_path / "clips" / "a.mp4")
    make_video(tmp_path / "b.mp4", n=6)
    again = tmp_path / "clips" / "a.mp4"
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label\n"
        "clips/a.mp4,s1,x\n"
        "b.mp4,s1,y\n"
        "./clips/a.mp4,s2,x\n"  # the same file written another way
        f"{again},s3,y\n"
    )
    sheet = read_sheet(tmp_path / "sheet.csv")
    assert sheet.video_id.is_unique
    videos, _ = probe_videos(sheet, 30.0, "fail")
    _, findings = audit(videos, {"cv": {"method": "loso"}})
    dup = findings[findings.check == "duplicate_path"]
    assert len(dup) == 1 and dup.severity.iloc[0] == "error" and dup.rows.iloc[0] == "2;4;5"
    assert "lines 2, 4, 5 list the same file" in dup.message.iloc[0]


def test_ids_come_from_the_path_relative_to_the_root_even_when_written_absolute(tmp_path):
    for p in ("p1", "p2"):
        make_video(tmp_path / "set" / p / "clip.mp4")
    first = tmp_path / "set" / "p1" / "clip.mp4"
    (tmp_path / "sheet.csv").write_text(f"path,subject,label\n{first},p1,x\np2/clip.mp4,p2,y\n")
    sheet = read_sheet(tmp_path / "sheet.csv", root=tmp_path / "set")
    assert sheet.video_id.tolist() == ["p1__clip", "p2__clip"]
    expected = [str((tmp_path / "set" / p / "clip.mp4").resolve()) for p in ("p1", "p2")]
    assert sheet.path.tolist() == expected


def test_semicolon_sheet_and_duplicate_paths_get_distinct_ids(tmp_path):
    make_video(tmp_path / "a b" / "clip 1.mp4")
    make_video(tmp_path / "a_b" / "clip_1.mp4")
    (tmp_path / "sheet.csv").write_text(
        "path;subject;label\na b/clip 1.mp4;s1;x\na_b/clip_1.mp4;s2;y\n"
    )
    sheet = read_sheet(tmp_path / "sheet.csv")
    assert sheet.video_id.is_unique
    assert sheet.video_id.iloc[0] == "a_b__clip_1"


def test_missing_column_names_the_fix(tmp_path):
    (tmp_path / "sheet.csv").write_text("file,subject,emotion\nx.mp4,s1,happy\n")
    with pytest.raises(SheetError, match="missing column.*path.*label"):
        read_sheet(tmp_path / "sheet.csv")


def test_non_utf8_sheet_is_a_clear_error(tmp_path):
    (tmp_path / "sheet.csv").write_bytes("path,subject,label\nvidéo.mp4,s1,x\n".encode("latin-1"))
    with pytest.raises(SheetError, match="not UTF-8"):
        read_sheet(tmp_path / "sheet.csv")


def test_undecodable_video_is_skipped_with_its_reason(tmp_path):
    make_video(tmp_path / "good.mp4", n=7)
    (tmp_path / "bad.mp4").write_text("this is not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label\ngood.mp4,s1,x\nbad.mp4,s2,y\nempty.mp4,s3,y\n"
    )
    videos, skipped = probe_videos(read_sheet(tmp_path / "sheet.csv"), 30.0, "skip")
    assert list(videos.video_id) == ["good"] and int(videos.n_frames.iloc[0]) == 7
    reasons = dict(zip(skipped.video_id, skipped.reason, strict=True))
    assert "cannot decode" in reasons["bad"] and "0 bytes" in reasons["empty"]
    # FFmpeg's words and what to try, without PyAV's "[Errno 1094995529] …: 'bad.mp4'"
    assert "Invalid data found" in reasons["bad"] and "re-encode it" in reasons["bad"]
    assert "Errno" not in reasons["bad"] and reasons["bad"].count("bad.mp4") == 1


def test_parallel_probing_gives_the_serial_result_in_order(tmp_path):
    for i, n in enumerate([7, 5, 9]):
        make_video(tmp_path / f"v{i}.mp4", n=n)
    (tmp_path / "bad.mp4").write_text("this is not a video")
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label\nv2.mp4,s1,x\nbad.mp4,s2,y\nv0.mp4,s2,x\nv1.mp4,s3,y\n"
    )
    sheet = read_sheet(tmp_path / "sheet.csv")
    serial = probe_videos(sheet, 30.0, "skip")
    parallel = probe_videos(sheet, 30.0, "skip", jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        assert a.equals(b)
    assert list(parallel[0].n_frames) == [9, 7, 5] and list(parallel[1].video_id) == ["bad"]
    with pytest.raises(Exception, match="bad.mp4"):
        probe_videos(sheet, 30.0, "fail", jobs=2)


def test_frame_folder_is_a_video(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((20, 30, 3), i, np.uint8)).save(folder / f"f{i}.png")
    (tmp_path / "sheet.csv").write_text("path,subject,label\nseq,s1,x\n")
    videos, skipped = probe_videos(read_sheet(tmp_path / "sheet.csv"), 12.0, "skip")
    assert skipped.empty
    assert (int(videos.n_frames[0]), videos.fps[0], int(videos.width[0])) == (3, 12.0, 30)


@pytest.mark.parametrize(
    "path,expected",
    [
        ("x.mp4", "x"),
        ("dir/sub/v 1.avi", "dir__sub__v_1"),
        ("über.mp4", "ber"),
        ("$(rm).mp4", "rm"),
    ],
)
def test_derived_ids_are_file_name_safe(path, expected):
    assert derive_id(path) == expected


def test_reference_photos_are_checked_with_the_sheet(tmp_path):
    import pandas as pd
    from PIL import Image

    from pipeline.datasets.sheet import reference_photos

    for name in ("a", "b", "c"):
        make_video(tmp_path / f"{name}.mp4")
    Image.new("RGB", (40, 40), (200, 150, 120)).save(tmp_path / "me.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label,reference\n"
        "a.mp4,s1,x,me.png\n"
        "b.mp4,s2,y,nobody.jpg\n"
        "c.mp4,s3,x,broken.jpg\n"
    )
    with pytest.raises(SheetError) as err:
        read_sheet(tmp_path / "sheet.csv")
    text = str(err.value)
    assert "2 problem(s)" in text
    assert "line 3: reference photo 'nobody.jpg' does not exist" in text
    assert "line 4: reference photo 'broken.jpg' is not a readable image" in text
    assert reference_photos(tmp_path / "sheet.csv") == [
        str(tmp_path / "broken.jpg"),
        str(tmp_path / "me.png"),
    ]
    (tmp_path / "sheet.csv").write_text(
        "path,subject,label,reference\na.mp4,s1,x,me.png\nb.mp4,s2,y,\n"
    )
    sheet = read_sheet(tmp_path / "sheet.csv")
    assert sheet.reference.iloc[0] == str(tmp_path / "me.png") and pd.isna(sheet.reference.iloc[1])
    videos, _ = probe_videos(sheet, 30.0, "fail")
    assert videos.reference.iloc[0] == str(tmp_path / "me.png")


def test_annotations_are_checked_with_the_sheet_and_regress_needs_them(tmp_path):
    for name in ("a", "b"):
        make_video(tmp_path / f"{name}.mp4")
    (tmp_path / "a.csv").write_text("time,valence\n0,0.1\n0.1,0.2\n")
    (tmp_path / "b.csv").write_text("time,valence\n0,0.1\n0.1,7\n")
    (tmp_path / "sheet.csv").write_text("path,subject,annotation\na.mp4,s1,a.csv\nb.mp4,s2,b.csv\n")
    with pytest.raises(SheetError, match="missing column"):
        read_sheet(tmp_path / "sheet.csv")  # classify: a label column is needed
    sheet = read_sheet(tmp_path / "sheet.csv", task="regress")
    assert sheet.label.tolist() == ["-", "-"]
    (tmp_path / "labelled.csv").write_text(
        "path,subject,label,annotation\na.mp4,s1,x,a.csv\nb.mp4,s2,y,gone.csv\n"
    )
    classify = read_sheet(tmp_path / "labelled.csv")  # classify reads no annotation
    assert classify.annotation.isna().all()
    assert sheet.annotation.tolist() == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    (tmp_path / "more.csv").write_text("path,subject,annotation\na.mp4,s1,a.csv\nb.mp4,s2,\n")
    with pytest.raises(SheetError, match="line 3: no annotation"):
        read_sheet(tmp_path / "more.csv", task="regress")
    from pipeline.datasets.sheet import annotation_problems

    problems = annotation_problems(tmp_path / "sheet.csv", None, {"range": [-1, 1]})
    assert problems == [f"{tmp_path / 'b.csv'}: line 3: valence 7 is outside the range [-1, 1]"]
    assert annotation_problems(tmp_path / "sheet.csv", None, {}) == []  # no range: no check
