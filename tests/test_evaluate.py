import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import evaluate, scores


def test_scores_on_a_known_confusion_matrix():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    s = scores(y_true, y_pred, 4)
    assert s["war"] == pytest.approx(6 / 8)
    assert s["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)  # class 3 absent: not averaged
    assert s["confusion"][0] == [3, 1, 0, 0]
    f1 = [2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4), 2 * 0.5 * 0.5 / 1.0, 1.0]
    assert s["macro_f1"] == pytest.approx(np.mean(f1))


def test_video_level_averages_clip_probabilities():
    rows = []
    # video v1 (label a): two clips weakly b, one clip strongly a → mean favours a
    for p_a in (0.45, 0.45, 0.95):
        rows.append(
            {
                "video_id": "v1",
                "subject": "s1",
                "label": "a",
                "fold": 0,
                "start": 0,
                "stop": 16,
                "p_a": p_a,
                "p_b": 1 - p_a,
            }
        )
    rows.append(
        {
            "video_id": "v2",
            "subject": "s2",
            "label": "b",
            "fold": 1,
            "start": 0,
            "stop": 16,
            "p_a": 0.2,
            "p_b": 0.8,
        }
    )
    pred = pd.DataFrame(rows)
    pred["pred"] = np.where(pred.p_a > pred.p_b, "a", "b")
    m = evaluate([pred], "gru", "hog")
    assert m["clip"]["pooled"]["war"] == pytest.approx(2 / 4)
    assert m["video"]["pooled"]["war"] == 1.0
    assert m["n_folds"] == 2 and m["n_videos"] == 2
    assert m["chance"] == {"uar": 0.5, "war": 0.5}


def test_face_accounting_counts_each_frame_once(tmp_path):
    import h5py

    from pipeline.qc import face_summary
    from pipeline.report.quality import face_section

    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("v")
        # frames: 0 detected, 1-2 interpolated, 3-4 missed then filled, 5 detected, 6 no face
        g["valid"] = np.array([1, 1, 1, 1, 1, 1, 0], bool)
        g["detected"] = np.array([1, 0, 0, 1, 1, 1, 1], bool)
        g["filled"] = np.array([0, 0, 0, 1, 1, 0, 0], bool)
        g["n_faces"] = np.array([1, 0, 0, 0, 0, 2, 0], np.uint8)
        g["others"] = np.zeros((1, 7), np.float32)
        g.attrs["cropped"] = False
    summary = face_summary([str(path)], [])
    assert summary["counts"]["detected"] == 2 and summary["counts"]["interpolated"] == 2
    html = face_section(summary)
    assert "6 of 7 frames" in html and "2 by the detector" in html
    assert "2 interpolated between agreeing detections, 2 across short misses" in html
    assert "1 frames showed more than one face" in html and "1 other detections" in html


def test_onthefly_curve_per_fraction_and_fold():
    from pipeline.evaluate import onthefly_curve

    rows = []
    for fold, vids in ((0, ["v1", "v2"]), (1, ["v3", "v4"])):
        for vid in vids:
            for fraction in (0.5, 1.0):
                right = fraction == 1.0 or vid in ("v1", "v3")
                rows.append(
                    {
                        "video_id": vid,
                        "fold": fold,
                        "fraction": fraction,
                        "label": "a",
                        "pred": "a" if right else "b",
                    }
                )
    curve = onthefly_curve([pd.DataFrame(rows)], ["a", "b"])
    assert curve["fractions"] == [0.5, 1.0]
    assert curve["war"]["mean"] == [0.5, 1.0] and curve["war"]["std"] == [0.0, 0.0]


def test_training_summary_reports_the_kept_epoch_and_json_safe_curves():
    from pipeline.evaluate import fold_of, training_summary

    h = pd.DataFrame(
        {
            "phase": "fit",
            "epoch": [1, 2, 3],
            "loss": [1.0, 0.5, 0.4],
            "val_loss": [0.9, 0.7, 0.8],
            "best": [False, True, False],
            "seconds": [1.0, 1.0, 1.0],
        }
    )
    closed = pd.DataFrame(
        {
            "phase": ["fit"],
            "epoch": [1],
            "loss": [0.2],
            "val_loss": [float("nan")],
            "best": [True],
            "seconds": [0.5],
        }
    )
    out = training_summary({fold_of("results/models/gru/hog/fold3/history.csv"): h, 0: closed})
    assert [f["fold"] for f in out] == [0, 3]
    assert out[1]["best_epoch"] == 2 and out[1]["epochs_run"] == 3 and not out[1]["refit"]
    assert out[0]["curve"]["val_loss"] == [None]
