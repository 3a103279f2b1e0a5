"""Frame backbones: each module defines `Backbone` with `kind`, `__call__` and `describe()`."""

from __future__ import annotations

import numpy as np

from pipeline.catalog import VECTORS
from pipeline.common import resolve_device


class TorchBackbone:
    """Shared plumbing of the network backbones: device, batching, inference mode.

    Subclasses set `self.net` (a torch module), `dim`, and define `preprocess(frames)` (uint8
    crops → float32 network input) and `embed(x)` (a batch tensor → (B, dim) features).
    """

    kind = VECTORS
    dim: int

    def setup(self, net, device: str, batch: int) -> None:
        import torch

        self._torch = torch
        self.device = resolve_device(device)
        self.batch = batch
        self.net = net.eval().to(self.device)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, x):
        raise NotImplementedError

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed inputs (N, ...) → (N, dim) float32, `batch` at a time."""
        torch = self._torch
        outs = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch):
                x = torch.from_numpy(inputs[start : start + self.batch]).to(self.device)
                outs.append(self.embed(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops → (N, dim) float32."""
        return self.forward(self.preprocess(frames))
