"""HOG descriptors of the aligned face (as OpenFace outputs): a (T, D) vector per frame."""

from __future__ import annotations

import numpy as np

from pipeline.catalog import VECTORS
from pipeline.common import ConfigError


class HOG:
    """Histogram of oriented gradients on a grey, resized face crop.

    Args:
        size: side of the square grey image the descriptor is computed on (default 96).
        cell: cell side in pixels (default 12); blocks are 2×2 cells, L2-Hys normalised.
        orientations: orientation bins (default 9).
    """

    kind = VECTORS

    def __init__(self, *, size: int = 96, cell: int = 12, orientations: int = 9):
        if size < 2 * cell:
            raise ConfigError(f"backbones.hog: size {size} must be at least two cells ({2 * cell})")
        self.size, self.cell, self.orientations = size, cell, orientations
        n = size // cell - 1
        self.dim = n * n * 4 * orientations

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops → (N, D) float32 descriptors."""
        import cv2
        from skimage.feature import hog

        out = np.empty((len(frames), self.dim), np.float32)
        for i, frame in enumerate(frames):
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            grey = cv2.resize(grey, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[i] = hog(
                grey,
                orientations=self.orientations,
                pixels_per_cell=(self.cell, self.cell),
                cells_per_block=(2, 2),
                block_norm="L2-Hys",
                feature_vector=True,
            )
        return out

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "input": [self.size, self.size, 1],
            "size": self.size,
            "cell": self.cell,
            "orientations": self.orientations,
        }
