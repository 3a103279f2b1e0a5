import pytest
import torch

from pipeline.train import build_model, class_weights, fit


@pytest.mark.parametrize(
    "name,shape",
    [("gru", (16, 40)), ("gru", (7, 40)), ("c3d", (16, 32, 32, 1)), ("c3d", (8, 24, 24, 3))],
)
def test_output_shapes_for_several_clip_lengths(name, shape):
    model = build_model(name, 5, shape, {})
    x = torch.rand(3, *shape) * (255 if name == "c3d" else 1)
    assert model(x).shape == (3, 5)


@pytest.mark.parametrize("name,shape", [("gru", (16, 20)), ("c3d", (16, 24, 24, 1))])
def test_overfits_a_tiny_batch(name, shape):
    torch.manual_seed(0)
    x = torch.rand(12, *shape) * (255 if name == "c3d" else 1)
    y = torch.arange(12) % 3
    model = build_model(name, 3, shape, {"dropout": 0.0})
    params = {"epochs": 40, "batch_size": 12, "lr": 0.003, "weight_decay": 0.0, "augment": False}
    history = fit(model, x, y, params, 0, "cpu")
    assert history.loss.iloc[-1] < history.loss.iloc[0] / 5
    assert history.train_acc.iloc[-1] == 1.0


def test_normalization_is_fitted_on_training_data_only():
    model = build_model("gru", 2, (4, 3), {})
    model.fit_normalization(torch.tensor([[[1.0, 2.0, 3.0]] * 4, [[3.0, 2.0, 1.0]] * 4]))
    assert torch.allclose(model.in_mean, torch.tensor([2.0, 2.0, 2.0]))


def test_class_weights_balance_the_loss():
    w = class_weights(torch.tensor([0, 0, 0, 1]).numpy(), 3)
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0])
