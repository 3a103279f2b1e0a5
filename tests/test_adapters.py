import numpy as np
import pytest
from PIL import Image

from pipeline.common import SheetError
from pipeline.datasets.adapters import build_sheet
from pipeline.datasets.sheet import probe_videos, read_sheet
from pipeline.video import write_video


def touch(path, content=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def frames(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)).save(
            folder / f"{folder.name}_{i:08d}.png"
        )


def roundtrip(sheet, root, tmp_path):
    """The adapter's sheet passes the generic validation against the same root."""
    path = tmp_path / "sheet.csv"
    sheet.to_csv(path, index=False)
    return read_sheet(path, root)


def test_ckplus_uses_labelled_sequences_only(tmp_path):
    root = tmp_path / "CK+"
    for subject, seq in [("S005", "001"), ("S010", "002"), ("S010", "003")]:
        frames(root / "cohn-kanade-images" / subject / seq)
    touch(root / "Emotion/S005/001/S005_001_00000003_emotion.txt", b"   3.0000000e+00\n")
    touch(root / "Emotion/S010/002/S010_002_00000003_emotion.txt", b"   7.0000000e+00\n")
    sheet = build_sheet("ckplus", root)
    assert sheet[["video_id", "subject", "label"]].values.tolist() == [
        ["S005_001", "S005", "disgust"],
        ["S010_002", "S010", "surprise"],
    ]
    validated = roundtrip(sheet, root, tmp_path)
    videos, skipped = probe_videos(validated, 30.0, "skip")
    assert skipped.empty and videos.n_frames.tolist() == [3, 3]


def test_enterface_reads_subject_and_emotion_from_folders(tmp_path):
    root = tmp_path / "enterface"
    clip = [np.full((32, 32, 3), 100, np.uint8)] * 4
    for rel in [
        "subject 1/anger/sentence 1/s1_an_1.avi",
        "subject 6/happiness/s6_ha_1.avi",
        "subject 12/sadness/sentence 5/s12_sa_5.avi",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, clip, fps=25)
    touch(root / "README.avi")  # fits no subject/emotion: reported and left out
    sheet = build_sheet("enterface", root)
    assert sorted(sheet.subject) == ["subject01", "subject06", "subject12"]
    assert dict(zip(sheet.subject, sheet.label, strict=True))["subject06"] == "happiness"
    videos, skipped = probe_videos(roundtrip(sheet, root, tmp_path), 30.0, "skip")
    assert skipped.empty and set(videos.n_frames) == {4}


def test_afew_keeps_the_official_split(tmp_path):
    root = tmp_path / "AFEW"
    touch(root / "Train_AFEW/Angry/000046280.avi")
    touch(root / "Train_AFEW/Happy/000123.avi")
    touch(root / "Val_AFEW/Neutral/000999.avi")
    sheet = build_sheet("afew", root)
    assert dict(zip(sheet.video_id, sheet.split, strict=True)) == {
        "train_000046280": "train",
        "train_000123": "train",
        "val_000999": "val",
    }
    assert set(sheet.label) == {"anger", "happiness", "neutral"}
    assert roundtrip(sheet, root, tmp_path).subject.is_unique


def test_dfew_maps_codes_and_official_folds(tmp_path):
    root = tmp_path / "DFEW"
    for name in ("00001", "00002", "00003"):
        frames(root / "clips" / name)
    touch(root / "clips/00004.mp4")
    codes = {"1": 1, "2": 7, "3": 0, "4": 4}

    def table(names):
        return ("video_name,label\n" + "".join(f"{n},{codes[n]}\n" for n in names)).encode()

    for k, test in enumerate([["1", "2"], ["3", "4"]], start=1):
        touch(root / f"labels/set_{k}/train.csv", table([n for n in codes if n not in test]))
        touch(root / f"labels/set_{k}/test.csv", table(test))
    sheet = build_sheet("dfew", root)
    assert sheet[["video_id", "label", "official_fold"]].values.tolist() == [
        ["00001", "happiness", 0],
        ["00002", "fear", 0],
        ["00004", "anger", 1],
    ]  # 00003 has label 0 (no single label): left out
    assert roundtrip(sheet, root, tmp_path).path.iloc[2].endswith("00004.mp4")


def test_wrong_layout_is_a_clear_error(tmp_path):
    with pytest.raises(SheetError, match="no cohn-kanade-images/ folder"):
        build_sheet("ckplus", tmp_path)
    with pytest.raises(SheetError, match="not a folder"):
        build_sheet("afew", tmp_path / "missing")
    with pytest.raises(SheetError, match="unknown dataset.format 'fer2013'"):
        build_sheet("fer2013", tmp_path)
    with pytest.raises(SheetError, match="no labelled video"):
        build_sheet("enterface", tmp_path)
