"""`resnet-attention`: a ResNet with residual channel-attention blocks, trained per fold.

The frame feature extractor of the MS-TCN reference among our seeds: a small ResNet whose
residual blocks carry squeeze-and-excitation channel attention (global average pool → FC →
ReLU → FC → sigmoid, scaling the residual branch before the skip connection), trained as a
frame classifier on the video labels. Because it is fitted on labels, it is trained **inside
each fold on that fold's training subjects only** (`python -m
pipeline.backbones.resnet_attention`, rule `train_backbone`) and then extracts features for
that fold only (`features/resnet-attention/fold{k}/shard-{s}.h5`): the test subjects of a fold
never shape the features it is evaluated on.

Features per frame: the globally pooled activations of the last stage (`width × 4` values).
Input: the aligned face resized to `size` (default 64), RGB, scaled to [0, 1] and standardised
per image (which removes skin tone and lighting, as the pixel models do).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from pipeline.backbones import TorchBackbone
from pipeline.common import (
    ConfigError,
    atomic_path,
    file_digest,
    parse_params,
    read_csv,
    resolve_device,
    run_main,
    seed_everything,
    set_threads,
    setup_logging,
)

log = logging.getLogger(__name__)

DEFAULTS = {
    "size": 64,
    "width": 16,
    "blocks": 1,
    "reduction": 4,
    "epochs": 8,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "batch_size": 64,
    "frames_per_video": 12,
    "seed": 0,
    "device": "auto",
    "batch": 128,
}
ARCH_KEYS = ("size", "width", "blocks", "reduction")


def build(n_classes: int, width: int = 16, blocks: int = 1, reduction: int = 4, **_):
    """The network: stem, 3 stages of residual channel-attention blocks (strides 2), head."""
    import torch
    from torch import nn

    class RCAB(nn.Module):
        """Residual block with channel attention on the residual branch."""

        def __init__(self, cin, cout, stride):
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
                else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )
            )

        def forward(self, x):
            y = self.body(x)
            return torch.relu(self.skip(x) + y * self.attention(y))

    class ResNetAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)
            )
            layers, cin = [], width
            for mult in (1, 2, 4):
                for b in range(blocks):
                    layers.append(RCAB(cin, width * mult, 2 if b == 0 else 1))
                    cin = width * mult
            self.stages = nn.Sequential(*layers)
            self.dim = cin
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(cin, n_classes))

        def features(self, x):
            return self.stages(self.stem(x)).mean((2, 3))

        def forward(self, x):
            return self.head(self.features(x))

    return ResNetAttention()


def preprocess(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 → (N, 3, size, size) float32, each image standardised."""
    import cv2

    out = np.empty((len(frames), 3, size, size), np.float32)
    for i, frame in enumerate(frames):
        img = cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_AREA)
        img = img.astype(np.float32) / 255.0
        out[i] = ((img - img.mean()) / max(float(img.std()), 1e-3)).transpose(2, 0, 1)
    return out


def training_frames(aligned_paths: list[str], videos: dict[str, str], per_video: int):
    """Evenly spaced valid frames of the given videos (video_id → label): (frames, labels, ids)."""
    import h5py

    frames, labels, ids = [], [], []
    for path in aligned_paths:
        with h5py.File(path, "r") as f:
            for vid in f:
                if vid not in videos:
                    continue
                valid = np.flatnonzero(f[vid]["valid"][:])
                if not len(valid):
                    continue
                pick = valid[
                    np.unique(np.linspace(0, len(valid) - 1, per_video).round().astype(int))
                ]
                frames.append(f[vid]["frames"][np.sort(pick)])
                labels += [videos[vid]] * len(pick)
                ids += [vid] * len(pick)
    if not frames:
        raise ConfigError("resnet-attention: no training frames in this fold")
    return np.concatenate(frames), labels, ids


def train_fold(aligned_paths, folds, fold: int, params: dict, out: str, threads: int = 1) -> None:
    """Train the frame classifier on the training subjects of `fold`; save it to `out`."""
    import torch

    from pipeline.train import class_weights

    p = {**DEFAULTS, **params}
    set_threads(threads)
    seed_everything(int(p["seed"]) + fold)
    device = resolve_device(p["device"])
    classes = sorted(folds.label.unique())
    train = folds[folds.fold != fold]
    test_subjects = set(folds[folds.fold == fold].subject)
    if set(train.subject) & test_subjects:
        raise AssertionError(f"fold {fold}: subjects on both sides")
    frames, labels, _ = training_frames(
        aligned_paths, dict(zip(train.video_id, train.label, strict=True)), p["frames_per_video"]
    )
    x = torch.from_numpy(preprocess(frames, p["size"]))
    to_index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([to_index[c] for c in labels])
    net = build(len(classes), **{k: p[k] for k in ARCH_KEYS if k != "size"}).to(device)
    weights = torch.from_numpy(class_weights(y.numpy(), len(classes))).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.Adam(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    gen = torch.Generator().manual_seed(int(p["seed"]) + fold)
    log.info("fold %d: %d frames of %d training videos", fold, len(x), train.video_id.nunique())
    for epoch in range(1, p["epochs"] + 1):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = correct = 0.0
        for i in range(0, len(x), p["batch_size"]):
            idx = order[i : i + p["batch_size"]]
            xb, yb = x[idx], y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # mirror half the faces
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb).to(device)
            yb = yb.to(device)
            opt.zero_grad()
            logits = net(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        log.info("epoch %d: loss %.4f, frame acc %.3f", epoch, total / len(x), correct / len(x))
    meta = {
        "backbone": "resnet-attention",
        "fold": fold,
        "classes": classes,
        "params": {k: p[k] for k in DEFAULTS if k != "device"},
        "train_subjects": sorted(train.subject.unique()),
        "n_frames": len(x),
    }
    with atomic_path(out) as tmp:
        torch.save({"state_dict": net.cpu().state_dict(), "meta": meta}, tmp)


class Backbone(TorchBackbone):
    """Pooled last-stage activations of a fold's trained ResNet-attention.

    Args:
        checkpoint: the fold's model.pt (written by `train_backbone`); the DAG passes it.
        device: auto, cpu or cuda[:N].
        batch: frames per forward pass.
        (the training settings of DEFAULTS are accepted and ignored here)
    """

    per_fold = True

    def __init__(self, checkpoint: str | None = None, device: str = "auto", batch: int = 128, **_):
        import torch

        if not checkpoint:
            raise ConfigError(
                "resnet-attention is trained per fold: extract it through the DAG "
                "(rule extract_fold_features) or pass checkpoint=results/backbones/"
                "resnet-attention/fold{k}/model.pt"
            )
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.meta = saved["meta"]
        arch = {k: self.meta["params"][k] for k in ARCH_KEYS}
        self.size = arch["size"]
        net = build(len(self.meta["classes"]), **arch)
        net.load_state_dict(saved["state_dict"], strict=True)
        self.dim = net.dim
        self.weights_digest = file_digest(checkpoint)
        self.setup(net, device, batch)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        return preprocess(frames, self.size)

    def embed(self, x):
        return self.net.features(x)

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [self.size, self.size, 3],
            "fold": self.meta["fold"],
            "train_subjects": self.meta["train_subjects"],
            "weights_digest": self.weights_digest,
        }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train resnet-attention on one fold's training set.")
    ap.add_argument("--aligned", nargs="+", required=True, help="aligned/shard-*.h5")
    ap.add_argument("--folds", required=True, help="results/folds.csv")
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--params", default="{}", help="backbones.resnet-attention as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="backbones/resnet-attention/fold{k}/model.pt")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    train_fold(
        args.aligned,
        read_csv(args.folds),
        args.fold,
        parse_params(args.params),
        args.out,
        args.threads,
    )


if __name__ == "__main__":
    run_main(main)
