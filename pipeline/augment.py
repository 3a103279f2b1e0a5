"""Training-time transforms: random changes to training inputs, never to evaluation inputs.

`augment_pixels` transforms pixel clips (B, T, H, W, C) for the 3D models (flip, crop,
brightness/contrast with a drift, temporal speed), at the strengths of a model's `augment`
setting (`augment_settings`, `augmenter`); `mirror_frames` flips half of a batch of preprocessed frames
(B, C, H, W) for frame classifiers such as the per-fold backbones. Every draw comes from the
generator passed in, so training stays reproducible.
"""

from __future__ import annotations

from pipeline.catalog import PIXELS
from pipeline.common import ConfigError

# `augment: true` for pixel models; a mapping overrides single strengths (0 turns one off).
AUGMENT = {"flip": True, "crop": 0.1, "brightness": 0.1, "contrast": 0.1, "speed": 0.2}


def augment_settings(value) -> dict | None:
    """The augmentation strengths of a model's `augment` setting (None: off)."""
    if value is False or value is None:
        return None
    if value is True:
        return dict(AUGMENT)
    unknown = set(value) - set(AUGMENT)
    if unknown:
        raise ConfigError(f"augment: unknown keys {sorted(unknown)}; known: {sorted(AUGMENT)}")
    return {**AUGMENT, **value}


def augment_pixels(x, gen, settings: dict):
    """Random training transforms of pixel clips (B, T, H, W, C) uint8 → float in [0, 255].

    Per clip, the same for all its frames: horizontal flip (p = 1/2) and a crop of side
    (1 − u)·H, u ∈ [0, crop], at a random place, resized back (one bilinear resampling does
    both); contrast × (1 ± contrast) about the clip mean and brightness ± brightness·255, plus
    a linear brightness drift of up to ± brightness·255 across the clip (lighting changing
    within a clip: per-clip standardisation would remove a constant change, not a drift);
    temporal speed × (1 ± speed): frames resampled at that rate from a random start, the last
    frame repeated when the clip runs out (as short videos are padded).
    """
    import torch
    from torch.nn import functional as F

    b, t, h, w, c = x.shape
    x = x.float()

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    if settings["speed"] > 0 and t > 1:
        speed = uniform(1 - settings["speed"], 1 + settings["speed"])
        room = ((t - 1) * (1 - speed)).clamp_min(0)
        start = torch.rand(b, generator=gen) * room
        idx = (start[:, None] + speed[:, None] * torch.arange(t)).round().long().clamp(0, t - 1)
        x = x[torch.arange(b)[:, None], idx]
    flip = bool(settings["flip"])
    scale = uniform(1 - settings["crop"], 1.0) if settings["crop"] > 0 else torch.ones(b)
    sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    if settings["crop"] > 0 or flip:
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = scale * sign
        theta[:, 1, 1] = scale
        theta[:, 0, 2] = (1 - scale) * (2 * torch.rand(b, generator=gen) - 1)
        theta[:, 1, 2] = (1 - scale) * (2 * torch.rand(b, generator=gen) - 1)
        planes = x.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)
        grid = F.affine_grid(theta, (b, t * c, h, w), align_corners=False)
        planes = F.grid_sample(
            planes, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        x = planes.reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2)
    if settings["contrast"] > 0 or settings["brightness"] > 0:
        shape = (b, 1, 1, 1, 1)
        gain = uniform(1 - settings["contrast"], 1 + settings["contrast"]).view(shape)
        shift = uniform(-settings["brightness"], settings["brightness"]).view(shape) * 255
        drift = uniform(-settings["brightness"], settings["brightness"]).view(shape) * 255
        ramp = (torch.linspace(-0.5, 0.5, t) if t > 1 else torch.zeros(1)).view(1, t, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        x = ((x - mean) * gain + mean + shift + drift * ramp).clamp(0, 255)
    return x


def augmenter(takes: str, value):
    """The training augmentation (x, generator) → x of a model that takes `takes`: the pixel
    transforms at the strengths of its `augment` setting for pixel models; None for any other
    input, or when `augment` is off."""
    settings = augment_settings(value) if takes == PIXELS else None
    if settings is None:
        return None

    def augment(x, gen):
        return augment_pixels(x, gen, settings)

    return augment


def mirror_frames(x, gen):
    """Mirror about half of a batch of frames (B, C, H, W) left-right (p = 1/2 each)."""
    import torch

    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
