"""Pixel clips for the 3D models: aligned crops resized, optionally grey, stored as uint8."""

from __future__ import annotations

import numpy as np

from pipeline.catalog import PIXELS


class Pixels:
    """Resized face crops.

    Args:
        size: output side in pixels (default 48; EmoP3D uses 100, C3D 112).
        grey: convert to one grey channel (default true).
    """

    kind = PIXELS

    def __init__(self, *, size: int = 48, grey: bool = True):
        self.size, self.grey = size, grey
        self.channels = 1 if grey else 3

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, size, size, C) uint8."""
        import cv2

        out = np.empty((len(frames), self.size, self.size, self.channels), np.uint8)
        for i, frame in enumerate(frames):
            img = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[i] = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None] if self.grey else img
        return out

    def describe(self) -> dict:
        return {
            "size": self.size,
            "channels": self.channels,
            "input": [self.size, self.size, self.channels],
        }
