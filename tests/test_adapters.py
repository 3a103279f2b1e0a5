import numpy as np
import pytest
from PIL import Image

from pipeline.common import SheetError
from pipeline.datasets.adapters import build_sheet
from pipeline.datasets.sheet import probe_videos, read_sheet
from pipeline.encode import write_video


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


def clip(path, n=6, fps=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (np.full((32, 32, 3), 30 * i, np.uint8) for i in range(n)), fps=fps)


def test_send_pairs_videos_with_their_ratings(tmp_path):
    from pipeline.targets import build_targets

    root = tmp_path / "SEND"
    clip(root / "videos/train/ID1_vid1.mp4")
    clip(root / "videos/test/ID2_vid3.mp4")
    clip(root / "videos/train/ID3_vid2.mp4")  # no ratings: left out
    touch(root / "ratings/train/ID1_vid1.csv", b"time,evaluatorWeightedEstimate\n0,0.1\n0.5,0.3\n")
    touch(root / "ratings/test/ID2_vid3.csv", b"time,evaluatorWeightedEstimate\n0,-0.2\n0.5,0\n")
    touch(root / "ratings/test/ID9_vid9.csv", b"time,evaluatorWeightedEstimate\n0,0\n")
    sheet = build_sheet("send", root)
    assert sheet[["video_id", "subject", "label"]].values.tolist() == [
        ["ID1_vid1", "ID1", "-"],
        ["ID2_vid3", "ID2", "-"],
    ]
    checked = read_sheet(_write(sheet, tmp_path), root, task="regress")
    videos, _ = probe_videos(checked, 30.0, "fail")
    times = {v: np.arange(6) / 10 for v in videos.video_id}
    targets, dims, _ = build_targets(videos, times, {})
    assert dims == ["evaluatorWeightedEstimate"]
    np.testing.assert_allclose(  # 0.5 s steps onto 10 fps frames; after 0.5 s: no label
        targets["ID1_vid1"][:, 0], [0.1, 0.14, 0.18, 0.22, 0.26, 0.3], rtol=1e-5
    )


def test_affwild2_reads_one_line_per_frame_with_gaps(tmp_path):
    from pipeline.targets import build_targets

    root = tmp_path / "AffWild2"
    clip(root / "videos/video1.mp4", n=4)
    clip(root / "videos/video2.avi", n=4)
    notes = root / "annotations/VA_Estimation_Challenge"
    touch(notes / "Train_Set/video1.txt", b"valence,arousal\n0.1,0.2\n-5,-5\n0.3,0.4\n0.5,0.6\n")
    touch(notes / "Validation_Set/video2.txt", b"valence,arousal\n0,0\n0,0\n0,0\n0,0\n")
    touch(notes / "Train_Set/video3_left.txt", b"valence,arousal\n0,0\n")
    sheet = build_sheet("affwild2", root)
    assert sheet[["video_id", "subject", "split"]].values.tolist() == [
        ["video1", "video1", "train"],
        ["video2", "video2", "val"],
    ]
    videos, _ = probe_videos(
        read_sheet(_write(sheet, tmp_path), root, task="regress"), 30.0, "fail"
    )
    settings = {"missing": [-5], "row_is_frame": True, "range": [-1, 1], "max_gap": 0.05}
    times = {v: np.arange(4) / 10 for v in videos.video_id}
    targets, dims, qc = build_targets(videos, times, settings)
    assert dims == ["valence", "arousal"]
    np.testing.assert_allclose(
        targets["video1"], [[0.1, 0.2], [np.nan] * 2, [0.3, 0.4], [0.5, 0.6]]
    )
    assert qc.set_index("video_id").loc["video1", "valence_labelled"] == 0.75
    with pytest.raises(SheetError, match="no time column"):
        build_targets(videos, times, {"missing": [-5]})  # without row_is_frame


def _write(sheet, tmp_path):
    path = tmp_path / "sheet.csv"
    sheet.to_csv(path, index=False)
    return path
