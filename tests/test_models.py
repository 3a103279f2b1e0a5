import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import catalog
from pipeline.augment import AUGMENT, augment_pixels
from pipeline.common import ConfigError
from pipeline.engine import Training, class_weights
from pipeline.engine import fit as engine_fit
from pipeline.models import build_model
from pipeline.splits import inner_split
from pipeline.train import onthefly


def fit(model, x, y, params, seed, device, x_val=None, y_val=None):
    """The engine's fit with a plain settings dict, augmenting pixel clips as training does."""
    from pipeline.augment import augmenter

    settings = Training(**params)
    augment = augmenter(model.takes, settings.augment)
    return engine_fit(model, x, y, settings, seed, device, x_val, y_val, augment)


VECTOR_MODELS = ["gru", "transformer", "mstcn", "cnn_lstm_partial", "meanpool", "statspool"]
PIXEL_MODELS = ["c3d", "pyranet3d", "cnn3d_convlstm_spp", "meanpool"]
REGRESS_ONLY = ["ridge"]  # tests/test_regression.py


def test_every_catalog_model_is_covered_here():
    assert set(VECTOR_MODELS) | set(PIXEL_MODELS) | set(REGRESS_ONLY) == set(catalog.MODELS)
    assert REGRESS_ONLY == [m for m, e in catalog.MODELS.items() if "classify" not in e.tasks]


def clips(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = 1 if len(shape) == 2 else 255
    return torch.rand(n, *shape, generator=g) * scale


@pytest.mark.parametrize("length", [4, 8, 16, 24])
@pytest.mark.parametrize("name", VECTOR_MODELS)
def test_vector_models_give_logits_for_several_clip_lengths(name, length):
    model = build_model(name, 5, (16, 40), {}).eval()
    assert model(clips(3, (length, 40))).shape == (3, 5)


@pytest.mark.parametrize("length", [8, 16, 24])
@pytest.mark.parametrize("name", PIXEL_MODELS)
def test_pixel_models_give_logits_for_several_clip_lengths(name, length):
    for size, channels in ((24, 1), (20, 3)):
        model = build_model(name, 5, (length, size, size, channels), {}).eval()
        assert model(clips(3, (length, size, size, channels))).shape == (3, 5)


# Loss after 40 full-batch epochs on 12 random clips of 3 classes must fall at least this much.
OVERFIT = {
    "gru": ({}, 5),
    "transformer": ({}, 5),
    "mstcn": ({}, 5),  # frame-wise CE of 2 stages + smoothing
    "cnn_lstm_partial": ({}, 5),  # E1 + E2
    "c3d": ({}, 5),
    "pyranet3d": ({"optimizer": "sgd", "lr": 0.01, "lr_step": 30}, 5),
    "cnn3d_convlstm_spp": ({}, 5),
}


@pytest.mark.parametrize("name", sorted(OVERFIT))
def test_overfits_a_tiny_batch(name):
    torch.manual_seed(0)
    shape = (16, 20) if catalog.MODELS[name].kind == catalog.VECTORS else (16, 24, 24, 1)
    x, y = clips(12, shape), torch.arange(12) % 3
    model = build_model(name, 3, shape, {"dropout": 0.0})
    params = {"epochs": 40, "batch_size": 12, "lr": 0.003, "weight_decay": 0.0, "augment": False}
    extra, factor = OVERFIT[name]
    history = fit(model, x, y, {**params, **extra}, 0, "cpu")
    assert history.loss.iloc[-1] < history.loss.iloc[0] / factor
    assert history.train_acc.iloc[-1] == 1.0


@pytest.mark.parametrize("shape", [(16, 20), (8, 12, 12, 1)])
def test_meanpool_is_scikit_learns_logistic_regression(shape):
    from sklearn.linear_model import LogisticRegression

    x, y = clips(30, shape, seed=1), torch.arange(30) % 3
    model = build_model("meanpool", 4, shape, {"C": 0.5})  # class 3 never seen in training
    history = fit(model, x, y, {"balance": "none"}, 0, "cpu")
    z = model.pooled(x)
    z = ((z - z.mean(0)) / z.std(0)).double().numpy()
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(z, y.numpy())
    with torch.no_grad():
        ours = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(ours[:, :3], reference.predict_proba(z), atol=1e-5)
    assert ours[:, 3].max() < 1e-6
    assert history.loss.iloc[0] == pytest.approx(
        -np.log(reference.predict_proba(z)[np.arange(30), y.numpy()]).mean()
    )


@pytest.mark.parametrize("shape", [(16, 20), (16, 24, 24, 1)])
def test_meanpool_overfits_a_tiny_batch(shape):
    """Closed form: the training loss falls from log K (zero weights) by the same factor 5."""
    x, y = clips(12, shape), torch.arange(12) % 3
    history = fit(build_model("meanpool", 3, shape, {"C": 100.0}), x, y, {}, 0, "cpu")
    assert history.loss.iloc[-1] < np.log(3) / 5
    assert history.train_acc.iloc[-1] == 1.0


def test_statspool_keeps_the_chosen_statistics_only():
    x = clips(4, (16, 5))
    two = build_model("statspool", 3, (16, 5), {"stats": ["std", "mean"]})
    assert two.stats == ("mean", "std")  # always in the order of STATS
    torch.testing.assert_close(two.pooled(x)[:, :5], x.mean(1))
    assert two.linear.in_features == 10
    with pytest.raises(ConfigError, match="stats must be distinct names"):
        build_model("statspool", 3, (16, 5), {"stats": ["median"]})


def test_meanpool_handles_two_classes():
    x, y = clips(20, (8, 6), seed=2), torch.arange(20) % 2
    x[y == 1] += 0.5
    model = build_model("meanpool", 2, (8, 6), {})
    fit(model, x, y, {}, 0, "cpu")
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() == 1.0


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    from pipeline.models import load_checkpoint

    model = build_model("cnn_lstm_partial", 3, (16, 20), {"hidden": 8}).eval()
    meta = {
        "model": "cnn_lstm_partial",
        "classes": ["a", "b", "c"],
        "input_shape": [16, 20],
        "params": {"hidden": 8, "epochs": 3},
    }
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp_path / "model.pt")
    loaded, loaded_meta = load_checkpoint(tmp_path / "model.pt")
    x = clips(2, (16, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded_meta["classes"] == ["a", "b", "c"]


def test_normalization_is_fitted_on_training_data_only():
    model = build_model("gru", 2, (4, 3), {})
    model.fit_normalization(torch.tensor([[[1.0, 2.0, 3.0]] * 4, [[3.0, 2.0, 1.0]] * 4]))
    assert torch.allclose(model.in_mean, torch.tensor([2.0, 2.0, 2.0]))


def test_class_weights_balance_the_loss():
    w = class_weights(torch.tensor([0, 0, 0, 1]).numpy(), 3)
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0])


def test_balanced_sampler_draws_classes_equally_often(monkeypatch):
    seen = []
    model = build_model("gru", 2, (4, 3), {})
    original = model.objective

    def spy(x, y, criterion):
        seen.append(y.clone())
        return original(x, y, criterion)

    monkeypatch.setattr(model, "objective", spy)
    y = torch.tensor([0] * 90 + [1] * 10)
    fit(model, clips(100, (4, 3)), y, {"epochs": 20, "balance": "sampler"}, 0, "cpu")
    drawn = torch.cat(seen)
    assert 0.42 < drawn.float().mean() < 0.58  # ~1/2, where plain shuffling gives 0.10


def test_inner_validation_split_holds_out_whole_subjects():
    rows = [
        {"video_id": f"{s}_{e}_{r}", "subject": s, "label": e}
        for s in [f"s{i}" for i in range(10)]
        for e in "abc"
        for r in range(2)
    ]
    table = pd.DataFrame(rows).loc[lambda d: d.index.repeat(3)].reset_index(drop=True)
    held = inner_split(table, 0.2, seed=0)
    val, train = set(table.subject[held]), set(table.subject[~held])
    assert val and train and not (val & train)
    assert len(val) == 2
    assert set(table.label[held]) == {"a", "b", "c"}
    assert (inner_split(table, 0.2, seed=0) == held).all()  # seeded
    assert not inner_split(table, 0.0, seed=0).any()
    assert not inner_split(table[table.subject.isin(["s1", "s2"])], 0.2, seed=0).any()


def test_early_stopping_keeps_the_best_validation_epoch():
    torch.manual_seed(0)
    # training labels are noise: validation loss rises once the model memorises them
    x, y = (
        clips(40, (8, 10), seed=3),
        torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(4)),
    )
    x_val, y_val = clips(40, (8, 10), seed=5), torch.randint(0, 2, (40,))
    model = build_model("gru", 2, (8, 10), {"dropout": 0.0, "hidden": 64})
    params = {"epochs": 60, "lr": 0.01, "patience": 5, "weight_decay": 0.0}
    history = fit(model, x, y, params, 0, "cpu", x_val, y_val)
    best = history[history.best]
    assert len(best) == 1 and best.val_loss.iloc[0] == history.val_loss.min()
    assert len(history) == best.epoch.iloc[0] + 5 < 60  # stopped `patience` epochs later
    from pipeline.engine import evaluate_loss

    criterion = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(class_weights(y.numpy(), 2)))
    restored, _ = evaluate_loss(model, x_val, y_val, criterion, "cpu")
    assert restored == pytest.approx(best.val_loss.iloc[0], rel=1e-5)


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_a_validation_loss_that_is_never_finite_stops_with_the_model_fold_and_epochs(task):
    from pipeline.common import TrainingError
    from pipeline.engine import train_selected
    from pipeline.objectives import Regression

    x = clips(40, (8, 6), seed=1)
    samples = pd.DataFrame(
        {"video_id": [f"v{i}" for i in range(40)], "subject": np.arange(40) % 5, "label": "a"}
    )
    samples.loc[::2, "label"] = "b"
    if task == "classify":
        y, objective = torch.tensor((samples.label == "b").to_numpy().astype(int)), None
    else:
        y, objective = torch.randn(40, 8, 1), Regression("mse", ["valence"], where="gru, fold 2")
    settings = Training(epochs=4, patience=2, val_subjects=0.2)
    held = inner_split(samples, 0.2, 0)
    x[torch.from_numpy(held)] = float("nan")  # the validation subject's features are damaged

    def build():
        return build_model("gru", 2 if task == "classify" else 1, (8, 6), {}, task=task)

    with pytest.raises(TrainingError) as err:
        train_selected(
            build, x, y, samples, settings, 0, "cpu", objective=objective, label="gru, fold 2"
        )
    message = str(err.value)
    assert "gru, fold 2" in message and "not finite at any epoch (1 to 2" in message
    assert "lr" in message and "NaN" in message


def test_regression_targets_are_standardised_on_the_fitted_frames_only():
    from pipeline.common import DataError
    from pipeline.objectives import Regression

    y = torch.tensor([[[1.0], [3.0]], [[5.0], [float("nan")]], [[100.0], [200.0]]])
    held = np.array([False, False, True])
    objective = Regression("mse", ["arousal"])
    z = objective.prepare(y, held)
    assert objective.mean[0] == pytest.approx(3.0) and torch.isnan(z[1, 1, 0])
    np.testing.assert_allclose(objective.restore(z.numpy())[2], [[100.0], [200.0]], rtol=1e-5)
    with pytest.raises(DataError, match="fold 1: no training clip has a labelled frame of arousal"):
        Regression("mse", ["arousal"], where="fold 1").prepare(y[1:2, 1:], np.array([False]))


def test_augmentation_flip_alone_mirrors_exactly():
    x = (torch.rand(6, 4, 8, 10, 1) * 255).to(torch.uint8)
    settings = {**AUGMENT, "crop": 0, "brightness": 0, "contrast": 0, "speed": 0}
    out = augment_pixels(x, torch.Generator().manual_seed(0), settings)
    for clip, original in zip(out, x.float(), strict=True):
        assert torch.allclose(clip, original, atol=1e-3) or torch.allclose(
            clip, original.flip(2), atol=1e-3
        )


def test_augmentation_speed_keeps_frame_order_and_stays_in_range():
    t = 16
    x = (
        torch.arange(t, dtype=torch.uint8).view(1, t, 1, 1, 1).expand(32, t, 4, 4, 1).contiguous()
        * 10
    )
    settings = {**AUGMENT, "flip": False, "crop": 0, "brightness": 0, "contrast": 0, "speed": 0.3}
    out = augment_pixels(x, torch.Generator().manual_seed(0), settings)[:, :, 0, 0, 0] / 10
    assert (out.diff(dim=1) >= 0).all()  # time runs forward
    steps = (out[:, 6] - out[:, 0]) / 6  # before the faster clips run out of frames
    assert steps.min() < 0.9 and steps.max() > 1.1  # some clips slower, some faster
    assert out.min() >= 0 and out.max() <= t - 1


def test_only_pixel_models_with_augment_on_get_an_augmentation():
    from pipeline.augment import augmenter

    assert augmenter(catalog.VECTORS, True) is None and augmenter(catalog.ANY, True) is None
    assert augmenter(catalog.PIXELS, False) is None
    x = (torch.rand(2, 4, 8, 8, 1) * 255).to(torch.uint8)
    out = augmenter(catalog.PIXELS, {"speed": 0})(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    with pytest.raises(ConfigError, match="augment: unknown keys"):
        augmenter(catalog.PIXELS, {"flop": True})


def test_augmentation_changes_training_clips_only():
    x = (torch.rand(4, 8, 16, 16, 1) * 255).to(torch.uint8)
    out = augment_pixels(x, torch.Generator().manual_seed(0), dict(AUGMENT))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert not torch.allclose(out, x.float())
    assert 0 <= out.min() and out.max() <= 255


def test_intensity_target_rises_to_the_apex():
    from pipeline.models.cnn_lstm_partial import intensity_target

    neutral, apex = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    w = torch.linspace(0, 1, 9)[:, None]
    onset = (1 - w) * neutral + w * apex  # (9, 2)
    target = intensity_target(onset[None])[0]
    assert target[0] == pytest.approx(0.0) and target[-1] == pytest.approx(1.0)
    assert (target.diff() > 0).all()
    flat = apex + 0.001 * torch.randn(9, 2)  # a window inside a held apex: no blown-up noise
    assert intensity_target(flat[None]).min() > 0.95


def test_mstcn_smoothing_loss_penalises_flicker():
    from pipeline.models.mstcn import truncated_mse

    steady = torch.zeros(1, 3, 10)
    steady[:, 0] = 5
    flicker = steady.clone()
    flicker[:, :, ::2] = flicker[:, :, ::2].roll(1, dims=1)
    assert truncated_mse(steady, 4.0) == 0
    assert truncated_mse(flicker, 4.0) > 1
    assert truncated_mse(flicker * 100, 4.0) <= 16  # truncated at tau²


def test_weighted_spp_pools_every_level_with_its_weight():
    from pipeline.models.cnn3d_convlstm_spp import WeightedSPP

    spp = WeightedSPP((1, 2))
    with torch.no_grad():
        spp.raw.copy_(torch.tensor([0.0, 3.0]))
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = spp(x)
    w = torch.nn.functional.softplus(torch.tensor([0.0, 3.0]))
    expected = torch.cat([w[0] * torch.tensor([15.0]), w[1] * torch.tensor([5.0, 7.0, 13.0, 15.0])])
    torch.testing.assert_close(out[0], expected)
    assert spp.out_dim(1) == 5


class Frames:
    """A stand-in feature reader: video v has frames whose value is the frame index."""

    def video(self, vid):
        return np.arange(40, dtype=np.float32).reshape(40, 1).repeat(3, 1)


@pytest.mark.parametrize("name", ["gru", "c3d"])
def test_onthefly_ends_at_the_video_level_prediction(name):
    from pipeline.clips import window

    test = pd.DataFrame(
        [{"video_id": "v", "start": s, "stop": e, "n_frames": 40} for s, e in window(40)]
    )
    shape = (16, 3) if name == "gru" else (16, 4, 4, 1)
    model = build_model(name, 2, shape, {}).eval()
    if name == "c3d":
        reader = type("R", (), {"video": lambda self, v: np.zeros((40, 4, 4, 1), np.uint8)})()
    else:
        reader = Frames()
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])[: len(test)]
    rows, seen = onthefly(model, reader, test, probs, 16, "cpu")
    assert [r["fraction"] for r in rows] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert [r["frames_seen"] for r in rows] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    np.testing.assert_allclose(seen[-1], probs.mean(0))  # all clips: the video-level result
    np.testing.assert_allclose(seen[3], probs[0])  # 16 frames seen: the first clip only
    np.testing.assert_allclose(seen[6], probs[:2].mean(0))  # 28 seen: clips ending at 16, 24
    assert np.allclose(seen.sum(1), 1.0)


def test_onthefly_feeds_variable_length_models_only_what_was_seen():
    test = pd.DataFrame([{"video_id": "v", "start": 0, "stop": 16, "n_frames": 20}])
    lengths = []

    class Spy(torch.nn.Module):
        variable_length = True

        def forward(self, x):
            lengths.append(x.shape[1])
            return torch.zeros(len(x), 2)

    onthefly(Spy(), Frames(), test, np.array([[0.5, 0.5]]), 16, "cpu")
    assert sorted(lengths) == [2, 4, 6, 8, 10, 12, 14]  # ⌈f·20⌉ frames before the clip ends


@pytest.mark.parametrize("stride", [1, 2])
def test_pyramidal_layer_equals_a_direct_loop(stride):
    """Every input position has its own weight; each output sums its receptive field."""
    from pipeline.models.pyranet3d import Pyramidal3d

    torch.manual_seed(0)
    layer = Pyramidal3d(2, 3, (5, 6, 7), rf=3, stride=stride)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 2, 5, 6, 7)
    out = layer(x)
    w, b, r = layer.weight, layer.bias, 3
    expected = torch.zeros_like(out)
    for n in range(2):
        for o in range(3):
            for t in range(out.shape[2]):
                for i in range(out.shape[3]):
                    for j in range(out.shape[4]):
                        t0, i0, j0 = t * stride, i * stride, j * stride
                        window = (slice(t0, t0 + r), slice(i0, i0 + r), slice(j0, j0 + r))
                        total = b[o, t, i, j].clone()
                        for c in range(2):
                            total += (w[o, c][window] * x[n, c][window]).sum()
                        expected[n, o, t, i, j] = total
    assert out.shape == (2, 3, *layer.out_shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert w.shape == (3, 2, 5, 6, 7)  # per position, not a shared kernel


def test_sgd_with_step_decay_follows_the_schedule():
    torch.manual_seed(0)
    model = build_model("gru", 2, (4, 3), {})
    x, y = torch.rand(8, 4, 3), torch.arange(8) % 2
    params = {"epochs": 4, "optimizer": "sgd", "lr": 0.1, "lr_step": 2, "lr_gamma": 0.1}
    history = fit(model, x, y, params, 0, "cpu")
    assert history.lr.tolist() == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert fit(build_model("gru", 2, (4, 3), {}), x, y, {"epochs": 2}, 0, "cpu").lr.tolist() == [
        1e-3,
        1e-3,
    ]


def test_partial_model_learns_intensity_and_predicts_after_every_frame():
    """E2: on onset → apex sequences the intensity head rises from neutral to apex."""
    from pipeline.models.cnn_lstm_partial import intensity_target

    g = torch.Generator().manual_seed(0)
    n, t, d = 48, 16, 8
    y = torch.arange(n) % 3
    apex = torch.eye(d)[1:4] * 3  # one direction per class
    onset = torch.randint(2, 6, (n,), generator=g)
    w = ((torch.arange(t)[None] - onset[:, None]) / 6).clamp(0, 1)  # (n, t) 0 → 1
    x = w[..., None] * apex[y][:, None] + 0.05 * torch.randn(n, t, d, generator=g)
    x[..., 0] += 1.0  # the neutral face
    torch.manual_seed(0)
    model = build_model("cnn_lstm_partial", 3, (t, d), {"dropout": 0.0, "hidden": 32})
    fit(model, x, y, {"epochs": 80, "lr": 0.01, "weight_decay": 0.0}, 0, "cpu")
    model.eval()
    with torch.no_grad():
        logits, intensity = model.frame_outputs(x)
        torch.testing.assert_close(logits[:, -1], model(x))  # the last step is the prediction
        target = intensity_target(model.normalize(x))
    assert logits.shape == (n, t, 3) and intensity.shape == (n, t)
    assert intensity[:, 0].mean() < 0.25 and intensity[:, -1].mean() > 0.75
    assert torch.corrcoef(torch.stack([intensity.flatten(), target.flatten()]))[0, 1] > 0.9
    assert (logits[:, -1].argmax(1) == y).float().mean() == 1.0


def test_train_stage_holds_out_subjects_refits_and_writes_everything(tmp_path):
    import h5py

    from pipeline.clips import window
    from pipeline.common import read_csv
    from pipeline.train import main

    rng = np.random.default_rng(0)
    clips_rows, fold_rows = [], []
    with h5py.File(tmp_path / "shard-0.h5", "w") as f:
        for s in range(6):
            for k, label in enumerate("abc"):
                vid = f"s{s}_{label}"
                n = 20 + 4 * s
                data = rng.normal(size=(n, 5)).astype(np.float32)
                data[:, k] += np.linspace(0, 3, n)  # the label's feature rises to the apex
                f.create_dataset(vid, data=data)
                fold_rows.append(
                    {"video_id": vid, "subject": f"s{s}", "label": label, "fold": s % 2}
                )
                for start, stop in window(n):
                    clips_rows.append(
                        {
                            "video_id": vid,
                            "subject": f"s{s}",
                            "label": label,
                            "start": start,
                            "stop": stop,
                            "n_frames": n,
                            "padded": 0,
                        }
                    )
    pd.DataFrame(clips_rows).to_csv(tmp_path / "clips.csv", index=False)
    pd.DataFrame(fold_rows).to_csv(tmp_path / "folds.csv", index=False)
    out = {
        k: tmp_path / name
        for k, name in (
            ("weights", "model.pt"),
            ("history", "history.csv"),
            ("predictions", "predictions.csv"),
            ("onthefly", "onthefly.csv"),
        )
    }
    params = {"epochs": 6, "patience": 2, "val_subjects": 0.34, "refit": True, "hidden": 8}
    main(
        [
            "--clips",
            str(tmp_path / "clips.csv"),
            "--folds",
            str(tmp_path / "folds.csv"),
            "--features",
            str(tmp_path / "shard-0.h5"),
            "--model",
            "gru",
            "--backbone",
            "hog",
            "--fold",
            "0",
            "--params",
            json.dumps(params),
            "--device",
            "cpu",
            *[a for k, p in out.items() for a in (f"--out-{k}", str(p))],
        ]
    )
    meta = torch.load(out["weights"], weights_only=True)["meta"]
    test_subjects = {"s0", "s2", "s4"}
    assert len(meta["val_subjects"]) == 1 and len(meta["train_subjects"]) == 2
    assert not (set(meta["val_subjects"]) | set(meta["train_subjects"])) & test_subjects
    assert meta["refit"] and 1 <= meta["best_epoch"] <= meta["epochs_run"] <= 6
    history = read_csv(out["history"])
    assert history.phase[history.phase == "refit"].size == meta["best_epoch"]
    assert history.val_loss[history.phase == "fit"].notna().all()
    pred = read_csv(out["predictions"])
    assert set(pred.subject) == test_subjects and pred.filter(like="p_").shape[1] == 3
    early = read_csv(out["onthefly"])
    assert len(early) == 10 * 9 and set(early.fraction) == set(np.round(np.arange(1, 11) / 10, 1))
