"""`resnet-attention`: a ResNet with residual channel-attention blocks, trained per fold.

The frame feature extractor of the MS-TCN reference among our seeds: a small ResNet whose
residual blocks carry squeeze-and-excitation channel attention (global average pool → FC →
ReLU → FC → sigmoid, scaling the residual branch before the skip connection), trained as a
frame classifier on the video labels. Because it is fitted on labels, it is trained **inside
each fold on that fold's training subjects only** (`train_fold`, the trainer its catalog entry
names, run by the generic `train_backbone` stage through the engine) and then extracts
features for that fold only (`features/resnet-attention/fold{k}/shard-{s}.h5`): the test
subjects of a fold never shape the features it is evaluated on.

Training: `frames_per_video` evenly spaced valid frames of every training video, labelled
with their video's label, half of each batch mirrored; class-weighted cross-entropy, Adam,
`epochs` epochs on every training subject (no inner split: `settings.Training(val_subjects=0)`).

Features per frame: the globally pooled activations of the last stage (`width × 4` values).
Input: the aligned face resized to `size` (default 64), RGB, scaled to [0, 1] and standardised
per image (which removes skin tone and lighting, as the pixel models do).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.augment import mirror_frames
from pipeline.backbones import FoldFrames, TorchBackbone, TrainedBackbone
from pipeline.common import file_digest, resolve_device
from pipeline.engine import train_selected
from pipeline.models.base import Trainable
from pipeline.settings import Training

ARCH_KEYS = ("size", "width", "blocks", "reduction")


class RCAB(nn.Module):
    """Residual block with channel attention (squeeze-and-excitation) on the residual branch."""

    def __init__(self, cin: int, cout: int, stride: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cout, max(1, cout // reduction), 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(max(1, cout // reduction), cout, 1),
            nn.Sigmoid(),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) → (B, cout, H / stride, W / stride)."""
        y = self.body(x)
        return torch.relu(self.skip(x) + y * self.attention(y))


class ResNetAttentionNet(Trainable):
    """Stem, 3 stages of residual channel-attention blocks (strides 2; width ×1, ×2, ×4), head."""

    def __init__(self, *, n_classes: int, width: int = 16, blocks: int = 1, reduction: int = 4):
        super().__init__()
        self.n_classes = n_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)
        )
        layers, cin = [], width
        for mult in (1, 2, 4):
            for b in range(blocks):
                layers.append(RCAB(cin, width * mult, 2 if b == 0 else 1, reduction))
                cin = width * mult
        self.stages = nn.Sequential(*layers)
        self.dim = cin
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(cin, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) standardised frames → (B, dim) pooled last-stage activations."""
        return self.stages(self.stem(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, K) frame logits (training only)."""
        return self.head(self.features(x))


def preprocess(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 → (N, 3, size, size) float32, each image standardised."""
    import cv2

    out = np.empty((len(frames), 3, size, size), np.float32)
    for i, frame in enumerate(frames):
        img = cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_AREA)
        img = img.astype(np.float32) / 255.0
        out[i] = ((img - img.mean()) / max(float(img.std()), 1e-3)).transpose(2, 0, 1)
    return out


def train_fold(
    data: FoldFrames,
    *,
    size: int = 64,
    width: int = 16,
    blocks: int = 1,
    reduction: int = 4,
    epochs: int = 8,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    frames_per_video: int = 12,
    seed: int = 0,
    device: str = "auto",
) -> TrainedBackbone:
    """Train the frame classifier on one fold's training videos (the per-fold trainer)."""
    frames, labels, samples = data.frames(frames_per_video)
    x = torch.from_numpy(preprocess(frames, size))
    y = torch.from_numpy(labels)
    settings = Training(
        lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, val_subjects=0.0
    )

    def build():
        return ResNetAttentionNet(
            n_classes=len(data.classes), width=width, blocks=blocks, reduction=reduction
        )

    fitted = train_selected(
        build,
        x,
        y,
        samples,
        settings,
        seed + data.fold,
        resolve_device(device),
        mirror_frames,
        label=f"resnet-attention, fold {data.fold}",
    )
    arch = {"size": size, "width": width, "blocks": blocks, "reduction": reduction}
    training = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay}
    training.update(batch_size=batch_size, frames_per_video=frames_per_video, seed=seed)
    meta = {"params": {**arch, **training}, "n_frames": len(x)}
    val_subjects = sorted(map(str, samples.subject[fitted.held].unique()))
    return TrainedBackbone(fitted.model, fitted.history, meta, val_subjects)


class ResNetAttention(TorchBackbone):
    """Pooled last-stage activations of a fold's trained ResNet-attention.

    Args:
        checkpoint: the fold's model.pt (written by `train_backbone`); the DAG passes it.
        device: auto, cpu or cuda[:N].
        batch: frames per forward pass.
    """

    def __init__(self, *, checkpoint: str, device: str = "auto", batch: int = 128):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.meta = saved["meta"]
        arch = {k: self.meta["params"][k] for k in ARCH_KEYS}
        self.size = arch.pop("size")
        net = ResNetAttentionNet(n_classes=len(self.meta["classes"]), **arch)
        net.load_state_dict(saved["state_dict"], strict=True)
        self.dim = net.dim
        self.weights_digest = file_digest(checkpoint)
        self.setup(net, device, batch)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        return preprocess(frames, self.size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [self.size, self.size, 3],
            "fold": self.meta["fold"],
            "train_subjects": self.meta["train_subjects"],
            "weights_digest": self.weights_digest,
        }
