"""`facenet`: facenet-pytorch's InceptionResnetV1 face embedding (512-d) as a frame backbone.

Its weights are not in the wheel and are never downloaded: `backbones.facenet.weights` must
point to a local copy of a facenet-pytorch state dict (e.g. `20180402-114759-vggface2.pt`
from the facenet-pytorch releases, fetched once on a machine with internet). The classifier
layer (`logits.*`) of such files is dropped; every other tensor must match.

Input: the aligned face resized to 160×160 RGB, standardised as facenet-pytorch does
((x − 127.5) / 128). Output: the L2-normalised 512-d embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backbones import TorchBackbone
from pipeline.common import ConfigError, file_digest

SIZE = 160
HINT = (
    "download 20180402-114759-vggface2.pt (or the casia-webface file) from the facenet-pytorch "
    "GitHub releases on a machine with internet, copy it here, and set "
    "backbones.facenet.weights to its path; nothing is downloaded at run time"
)


def weights_path(configured: str | None) -> Path:
    if not configured:
        raise ConfigError(f"backbones.facenet.weights is not set: {HINT}")
    path = Path(configured)
    if not path.is_file():
        raise ConfigError(f"backbones.facenet.weights: {path} does not exist: {HINT}")
    return path


def load_state(net, path: Path) -> None:
    """Load a facenet-pytorch state dict into `net` (strict except the dropped logits)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, not a torch file
        raise ConfigError(
            f"backbones.facenet.weights: {path} is not a torch state dict ({err})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"backbones.facenet.weights: {path} holds a {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"backbones.facenet.weights: {path} is not an InceptionResnetV1 state dict "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


class FaceNet(TorchBackbone):
    """InceptionResnetV1 embeddings of the aligned face.

    Args:
        weights: local path of the state dict (required).
        device: auto, cpu or cuda[:N].
        batch: frames per forward pass.
    """

    dim = 512

    def __init__(self, *, weights: str | None = None, device: str = "auto", batch: int = 64):
        from facenet_pytorch import InceptionResnetV1

        self.path = weights_path(weights)
        self.weights_digest = file_digest(self.path)
        net = InceptionResnetV1(pretrained=None, classify=False)
        load_state(net, self.path)
        self.setup(net, device, batch)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB → (N, 3, 160, 160) float32, standardised."""
        import cv2

        out = np.empty((len(frames), 3, SIZE, SIZE), np.float32)
        for i, frame in enumerate(frames):
            img = cv2.resize(
                np.ascontiguousarray(frame), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR
            )
            out[i] = img.transpose(2, 0, 1)
        return (out - 127.5) / 128.0

    def embed(self, x):
        return self.net(x)  # L2-normalised 512-d embeddings

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [SIZE, SIZE, 3],
            "weights": self.path.name,
            "weights_digest": self.weights_digest,
        }
