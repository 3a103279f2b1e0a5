"""`onnx`: any frame model exported to ONNX, from a local file, as a backbone.

Bring your own network: a model downloaded once (HSEmotion/EmotiEffLib's AffectNet
classifiers, LibreFace's action units, one you trained) runs on every aligned face through
onnxruntime, and its outputs become cached features like any backbone's. Nothing is
downloaded: `path` is a file on disk. Several ONNX models coexist as variants,
`onnx@label` (e.g. `onnx@hsemotion`), each with its own settings.

Preprocessing, all in config (the model's card says what it was trained with): the aligned
crop (RGB, `frontalize.crop_size`) is converted to `colour` (rgb, bgr or grey), resized to
`size` ([height, width], or one side), scaled by `scale`, then standardised per channel with
`mean` and `std`, and laid out `nchw` or `nhwc`. Outputs: the named `outputs` (default every
output of the model, in order), each flattened per frame and put side by side; those in
`softmax` are turned into probabilities first (for a classifier that outputs logits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.catalog import VECTORS
from pipeline.common import ConfigError, file_digest, resolve_device

INTERPOLATION = {"area": 3, "linear": 1, "cubic": 2, "nearest": 0}  # cv2.INTER_*


class OnnxBackbone:
    """A local ONNX model on the aligned faces.

    Args:
        path: the .onnx file (required; nothing is downloaded).
        size: input side, or [height, width] (default 224).
        colour: rgb, bgr or grey (one channel).
        interpolation: area, linear, cubic or nearest (OpenCV's resize).
        scale: multiplies the 0–255 pixel values first (default 1/255).
        mean, std: per-channel standardisation after scaling, one value or one per channel.
        layout: nchw (PyTorch exports) or nhwc (TensorFlow/Keras exports).
        input: the model input fed (default its first).
        outputs: output names whose values form the features (default all).
        softmax: output names to turn from logits into probabilities.
        columns: optional names of the feature columns (as many as the features).
        batch: frames per run.
        device: auto (CUDA when onnxruntime has it), cpu or cuda[:N].
        threads: onnxruntime's intra-op threads (0: its default, all cores).
    """

    kind = VECTORS

    def __init__(
        self,
        *,
        path: str | None = None,
        size: int | list[int] = 224,
        colour: str = "rgb",
        interpolation: str = "area",
        scale: float = 1 / 255,
        mean: float | list[float] = 0.0,
        std: float | list[float] = 1.0,
        layout: str = "nchw",
        input: str | None = None,
        outputs: list[str] | None = None,
        softmax: list[str] | None = None,
        columns: list[str] | None = None,
        batch: int = 32,
        device: str = "auto",
        threads: int = 1,
    ):
        import onnxruntime as ort

        where = "backbones.onnx"
        if not path:
            raise ConfigError(
                f"{where}.path: give the local .onnx file of the model (nothing is downloaded)"
            )
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ConfigError(
                f"{where}.path: {self.path} does not exist; download it once, then point here"
            )
        if colour not in ("rgb", "bgr", "grey"):
            raise ConfigError(f"{where}.colour: {colour!r}; known: rgb, bgr, grey")
        if layout not in ("nchw", "nhwc"):
            raise ConfigError(f"{where}.layout: {layout!r}; known: nchw, nhwc")
        if interpolation not in INTERPOLATION:
            raise ConfigError(
                f"{where}.interpolation: {interpolation!r}; known: {', '.join(INTERPOLATION)}"
            )
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"{where}.size: {size!r}; one side or [height, width]")
        self.channels = 1 if colour == "grey" else 3
        self.colour, self.layout, self.batch = colour, layout, int(batch)
        self.interpolation = INTERPOLATION[interpolation]
        self.scale = np.float32(scale)
        self.mean = self._per_channel(mean, "mean")
        self.std = self._per_channel(std, "std")
        if (self.std == 0).any():
            raise ConfigError(f"{where}.std: a zero would divide by zero")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime's own error types for a broken file
            raise ConfigError(
                f"{where}.path: {self.path} is not a model onnxruntime can load ({err})"
            ) from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input = input or next(iter(inputs))
        if self.input not in inputs:
            raise ConfigError(
                f"{where}.input: {self.input!r} is not an input of {self.path.name}; its inputs: {', '.join(inputs)}"
            )
        self._check_shape(inputs[self.input].shape)
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = list(outputs or names)
        self.softmax = set(softmax or [])
        for name in [*self.outputs, *self.softmax]:
            if name not in names:
                raise ConfigError(
                    f"{where}: {name!r} is not an output of {self.path.name}; its outputs: {', '.join(names)}"
                )
        self.weights_digest = file_digest(self.path)
        self.dim = self(np.zeros((1, 8, 8, 3), np.uint8)).shape[1]
        if columns is not None and len(columns) != self.dim:
            raise ConfigError(f"{where}.columns: {len(columns)} names for {self.dim} features")
        self.columns = list(columns) if columns is not None else None

    def _per_channel(self, value, name: str) -> np.ndarray:
        values = np.atleast_1d(np.asarray(value, np.float32))
        if len(values) not in (1, self.channels):
            raise ConfigError(
                f"backbones.onnx.{name}: {len(values)} values for {self.channels} channel(s)"
            )
        return np.broadcast_to(values, (self.channels,)).copy()

    def _check_shape(self, shape: list) -> None:
        """The model's input shape (None or a name where dynamic) against the configuration."""
        h, w = self.size
        expected = (
            [None, self.channels, h, w] if self.layout == "nchw" else [None, h, w, self.channels]
        )
        if len(shape) != 4:
            raise ConfigError(
                f"backbones.onnx: {self.path.name}'s input {self.input!r} has shape {shape}; an image batch has 4 dimensions"
            )
        wrong = [
            (axis, got, want)
            for axis, (got, want) in enumerate(zip(shape, expected, strict=True))
            if want is not None and isinstance(got, int) and got > 0 and got != want
        ]
        if wrong:
            raise ConfigError(
                f"backbones.onnx: {self.path.name} takes {shape} ({self.layout}) but the settings "
                f"make {expected[1:]} per frame; set size, colour and layout to the model's "
                f"input (it differs on axes {', '.join(str(a) for a, _, _ in wrong)})"
            )

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB → the model's input batch, float32."""
        import cv2

        h, w = self.size
        out = np.empty((len(frames), h, w, self.channels), np.float32)
        for i, frame in enumerate(np.ascontiguousarray(frames)):
            if self.colour == "grey":
                frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            elif self.colour == "bgr":
                frame = frame[..., ::-1]
            resized = cv2.resize(
                np.ascontiguousarray(frame), (w, h), interpolation=self.interpolation
            )
            out[i] = resized.reshape(h, w, self.channels)
        out = (out * self.scale - self.mean) / self.std
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if self.layout == "nchw" else out

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops → (N, D) float32."""
        parts = []
        for start in range(0, len(frames), self.batch):
            x = self.preprocess(frames[start : start + self.batch])
            row = []
            for name, value in zip(
                self.outputs, self.session.run(self.outputs, {self.input: x}), strict=True
            ):
                value = np.asarray(value, np.float32).reshape(len(x), -1)
                if name in self.softmax:
                    value = np.exp(value - value.max(1, keepdims=True))
                    value /= value.sum(1, keepdims=True)
                row.append(value)
            parts.append(np.concatenate(row, axis=1))
        if not parts:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        return np.concatenate(parts)

    def describe(self) -> dict:
        out = {
            "dim": self.dim,
            "input": [*self.size, self.channels],
            "model": self.path.name,
            "weights_digest": self.weights_digest,
            "outputs": self.outputs,
        }
        if self.columns:
            out["columns"] = self.columns
        return out


def inspect(path: str) -> str:
    """The inputs and outputs of an ONNX file (name, shape, element type), one per line: what
    `input`, `size`, `layout` and `outputs` must match."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lines = [f"{Path(path).name}"]
    for what, args in (("input", session.get_inputs()), ("output", session.get_outputs())):
        lines += [f"  {what} {a.name!r}: shape {a.shape}, {a.type}" for a in args]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m pipeline.backbones.onnx",
        description="List an ONNX model's inputs and outputs (to fill in backbones.onnx).",
    )
    ap.add_argument("model", help="the .onnx file")
    print(inspect(ap.parse_args().model))
