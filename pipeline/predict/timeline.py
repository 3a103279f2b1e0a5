"""timeline.png: per-frame probabilities (or a regress run's values) over time, drawn with
Pillow."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import (
    atomic_path,
)

log = logging.getLogger(__name__)


# matplotlib's tab10, the report's class colours
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def nice_step(span: float, ticks: int = 8) -> float:
    """A round tick step (1, 2 or 5 × 10^k) giving about `ticks` ticks over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


class Timeline:
    """timeline.png: the per-frame probabilities over time, one line per class, frames without
    a face shaded, a legend. Drawn with Pillow at twice the size and reduced (antialiased):
    ~10 ms a video where matplotlib took ~100 ms, which in a batch of short clips was a
    quarter of the work after detection."""

    WIDTH, HEIGHT, SCALE = 900, 340, 2
    LEFT, RIGHT, TOP, BOTTOM = 62, 150, 30, 44  # margins: axis labels, legend, title, time

    def __init__(
        self,
        classes: list[str],
        prefix: str = "p_",
        limits: tuple[float, float] = (0.0, 1.0),
    ):
        """One line per column `<prefix><class>` of the frames table; the value axis spans
        `limits` (probabilities: 0–1; a regress run: its labels' span, prefix "")."""
        from PIL import ImageFont

        self.classes, self.prefix = classes, prefix
        self.lo, self.hi = float(limits[0]), float(limits[1])
        if not self.hi > self.lo:
            self.hi = self.lo + 1.0
        s = self.SCALE
        self.font = ImageFont.load_default(size=11 * s)
        self.small = ImageFont.load_default(size=10 * s)

    def draw(self, frames: pd.DataFrame, title: str, out: Path) -> None:
        from PIL import Image, ImageDraw

        s = self.SCALE
        w, h = self.WIDTH * s, self.HEIGHT * s
        x0, x1 = self.LEFT * s, w - self.RIGHT * s
        y0, y1 = self.TOP * s, h - self.BOTTOM * s
        t = frames.time_s.to_numpy(float)
        start, stop = float(t[0]), float(t[-1]) if len(t) > 1 and t[-1] > t[0] else t[0] + 1

        def px(times):
            return x0 + (np.asarray(times) - start) / (stop - start) * (x1 - x0)

        def py(p):
            return y1 - (np.asarray(p) - self.lo) / (self.hi - self.lo) * (y1 - y0)

        image = Image.new("RGB", (w, h), "white")
        pen = ImageDraw.Draw(image)
        missing = ~frames.face.to_numpy(bool)
        if missing.any():  # runs of frames without a face, each frame its step around it
            step = (stop - start) / max(len(t) - 1, 1)
            edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(int), 0]))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                left, right = px(t[a] - step / 2), px(t[b - 1] + step / 2)
                pen.rectangle([max(x0, left), y0, min(x1, right), y1], fill=(229, 229, 229))
        for p in np.linspace(self.lo, self.hi, 5):  # grid and y ticks
            p = round(float(p), 3)
            y = py(p)
            pen.line([(x0, y), (x1, y)], fill=(225, 225, 225), width=s)
            pen.text((x0 - 6 * s, y), f"{p:g}", fill="black", font=self.small, anchor="rm")
        step = nice_step(stop - start)
        for tick in np.arange(np.ceil(start / step) * step, stop + step / 1e6, step):
            x = px(tick)
            pen.line([(x, y0), (x, y1)], fill=(225, 225, 225), width=s)
            pen.text((x, y1 + 5 * s), f"{tick:g}", fill="black", font=self.small, anchor="mt")
        for k, c in enumerate(self.classes):
            ys = py(frames[f"{self.prefix}{c}"].to_numpy(float)).tolist()
            points = list(zip(px(t).tolist(), ys, strict=True))
            colour = PALETTE[k % len(PALETTE)]
            if len(points) > 1:
                pen.line(points, fill=colour, width=3 * s // 2 + 1)
            else:
                x, y = points[0]
                pen.ellipse([x - 2 * s, y - 2 * s, x + 2 * s, y + 2 * s], fill=colour)
            ly = y0 + (6 + 16 * k) * s  # legend
            pen.line([(x1 + 12 * s, ly), (x1 + 32 * s, ly)], fill=colour, width=2 * s)
            pen.text((x1 + 38 * s, ly), c, fill="black", font=self.small, anchor="lm")
        if missing.any():
            ly = y0 + (6 + 16 * len(self.classes)) * s
            pen.rectangle([x1 + 12 * s, ly - 5 * s, x1 + 32 * s, ly + 5 * s], fill=(229, 229, 229))
            pen.text((x1 + 38 * s, ly), "no face", fill="black", font=self.small, anchor="lm")
        pen.rectangle([x0, y0, x1, y1], outline="black", width=s)
        pen.text(((x0 + x1) / 2, h - 6 * s), "time (s)", fill="black", font=self.font, anchor="md")
        pen.text(((x0 + x1) / 2, y0 - 8 * s), title, fill="black", font=self.font, anchor="md")
        label = Image.new("RGB", (120 * s, 16 * s), "white")
        ImageDraw.Draw(label).text(
            (60 * s, 8 * s),
            "probability" if self.prefix == "p_" else "value",
            fill="black",
            font=self.font,
            anchor="mm",
        )
        image.paste(label.rotate(90, expand=True), (4 * s, int((y0 + y1) / 2 - 60 * s)))
        small = image.reduce(s)  # box filter: the antialiasing
        with atomic_path(out) as tmp:
            small.save(tmp, format="PNG", compress_level=1)
