import pytest
import torch

from pipeline.train import build_model, class_weights, fit


@pytest.mark.parametrize(
    "name,shape",
    [
        ("gru", (16, 40)),
        ("gru", (7, 40)),
        ("c3d", (16, 32, 32, 1)),
        ("c3d", (8, 24, 24, 3)),
        ("pyranet3d", (16, 24, 24, 1)),
        ("pyranet3d", (8, 20, 20, 3)),
        ("pyranet3d", (24, 20, 20, 1)),
    ],
)
def test_output_shapes_for_several_clip_lengths(name, shape):
    model = build_model(name, 5, shape, {})
    x = torch.rand(3, *shape) * (1 if name == "gru" else 255)
    assert model(x).shape == (3, 5)


@pytest.mark.parametrize(
    "name,shape,extra",
    [
        ("gru", (16, 20), {}),
        ("c3d", (16, 24, 24, 1), {}),
        ("pyranet3d", (16, 24, 24, 1), {"optimizer": "sgd", "lr": 0.01, "lr_step": 30}),
    ],
)
def test_overfits_a_tiny_batch(name, shape, extra):
    torch.manual_seed(0)
    x = torch.rand(12, *shape) * (1 if name == "gru" else 255)
    y = torch.arange(12) % 3
    model = build_model(name, 3, shape, {"dropout": 0.0})
    params = {"epochs": 40, "batch_size": 12, "lr": 0.003, "weight_decay": 0.0, "augment": False}
    params.update(extra)
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
