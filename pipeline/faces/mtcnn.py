"""MTCNN (Zhang et al., 2016) with facenet-pytorch's networks and weights, run lean.

facenet-pytorch's `detect_face` resamples with torch operations, one candidate box at a time,
and runs its networks in NCHW layout. On the small images the face stage searches (a region of
~150 pixels around the previous face, a 320-pixel-wide frame) its time goes mostly to some 150
small tensor operations and to NCHW max pooling, which this CPU build runs ~6x slower than
channels-last. `Cascade` runs the same three networks (P-, R-, O-net) with the same weights,
thresholds, scale pyramid, box regression and non-maximum suppression, but resamples with
OpenCV on numpy (each pyramid level and every candidate crop, area interpolation like facenet's
`area`), feeds every candidate of a stage to its network as one batch, and keeps the networks
channels-last: a search near the previous face takes ~3 ms instead of ~12 inside the stage.
Its boxes match `facenet_pytorch.MTCNN.detect`'s to within a pixel or two, scores to ~1e-3 (the
resampling differs in the last bits; tested on the demo faces).
"""

from __future__ import annotations

import numpy as np

FACTOR = 0.709  # scale step of the image pyramid (facenet-pytorch's default)


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels - np.float32(127.5)) * np.float32(0.0078125)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, minimum: bool = False):
    """Greedy non-maximum suppression; indices kept, best first. Overlap is intersection over
    union of box areas (torchvision's `nms`, which facenet uses in its first two stages) or,
    with `minimum`, over the smaller area with +1 pixel sizes (facenet's last stage)."""
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    plus = 1.0 if minimum else 0.0
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = w * h
        if minimum:
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet's `bbreg`: move box edges by the regression, in box sizes (+1 pixel)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """facenet's `rerec`: the square on the longer side, same centre."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _integral(image: np.ndarray) -> np.ndarray:
    """Summed-area table (H + 1, W + 1, 3) of an 8-bit image, float64 (exact)."""
    import cv2

    return cv2.integral(np.ascontiguousarray(image, np.uint8), sdepth=cv2.CV_64F)


def _area(integral: np.ndarray, x0, y0, x1, y1, size: tuple[int, int]) -> np.ndarray:
    """Boxes [x0, x1) × [y0, y1) (integer arrays (K,)) resampled to size (height, width) as
    torch's `interpolate(mode="area")` (adaptive average pooling, which facenet uses): output
    pixel i averages input pixels floor(i·n/m) to ceil((i+1)·n/m). (K, height, width, C)."""

    def windows(start, length, n):
        i = np.arange(n)[None]
        return (
            start[:, None] + (i * length[:, None]) // n,
            start[:, None] - ((-(i + 1) * length[:, None]) // n),
        )

    sy, ey = windows(y0, y1 - y0, size[0])
    sx, ex = windows(x0, x1 - x0, size[1])
    sy, ey, sx, ex = sy[:, :, None], ey[:, :, None], sx[:, None, :], ex[:, None, :]
    total = integral[ey, ex] - integral[sy, ex] - integral[ey, sx] + integral[sy, sx]
    return (total / ((ey - sy) * (ex - sx))[..., None]).astype(np.float32)


def _crops(integral: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each box's pixels (clipped to the image, as facenet's `pad`) resampled to size × size,
    normalised; and the boxes that had pixels."""
    height, width = integral.shape[0] - 1, integral.shape[1] - 1
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x0, y0 = np.maximum(b[:, 0], 1) - 1, np.maximum(b[:, 1], 1) - 1
    x1, y1 = np.minimum(b[:, 2], width), np.minimum(b[:, 3], height)
    ok = np.flatnonzero((x1 > x0) & (y1 > y0))
    crops = _area(integral, x0[ok], y0[ok], x1[ok], y1[ok], (size, size))
    return _normalise(crops), boxes[ok]


class Cascade:
    """MTCNN's three stages on one RGB image; see the module docstring.

    Args:
        thresholds: P-, R- and O-net score thresholds.
        device: torch device for the networks (resampling stays on the CPU).
    """

    def __init__(self, thresholds=(0.6, 0.7, 0.7), device="cpu"):
        import torch
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.thresholds = tuple(float(t) for t in thresholds)
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (
            net.eval().to(self.device, memory_format=torch.channels_last)
            for net in (PNet(), RNet(), ONet())
        )

    def run(self, net, batch: np.ndarray) -> list[np.ndarray]:
        """One network on a normalised float32 batch (N, H, W, 3); its outputs as numpy."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)  # channels-last
        with torch.inference_mode():
            return [o.float().cpu().numpy() for o in net(x.to(self.device))]

    def detect(self, image: np.ndarray, min_face: float):
        """Faces of at least `min_face` pixels in an RGB uint8 image (H, W, 3): boxes (N, 4)
        x1, y1, x2, y2, scores (N,), landmarks (N, 5, 2) (eyes, nose, mouth corners), float32,
        most confident first."""
        t1, t2, t3 = self.thresholds
        height, width = image.shape[:2]
        integral = _integral(np.asarray(image))
        none = (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 5, 2), np.float32),
        )

        # P-net over the pyramid: 12-pixel windows with stride 2 at each scale
        scale = 12.0 / min_face
        shortest = min(height, width) * scale
        found = []
        while shortest >= 12:
            size = (int(height * scale + 1), int(width * scale + 1))
            whole = [np.array([0]), np.array([0]), np.array([width]), np.array([height])]
            level = _area(integral, *whole, size)[0]
            reg, prob = self.run(self.pnet, _normalise(level)[None])
            ys, xs = np.nonzero(prob[0, 1] >= t1)
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                boxes = np.concatenate(
                    [
                        np.floor((2 * cells + 1) / scale),
                        np.floor((2 * cells + 12) / scale),
                        prob[0, 1, ys, xs][:, None],
                        reg[0][:, ys, xs].T,
                    ],
                    axis=1,
                )
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= FACTOR
            shortest *= FACTOR
        if not found:
            return none
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        boxes = np.column_stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ]
        )
        boxes = _square(boxes)

        # R-net on every candidate, one batch
        crops, boxes = _crops(integral, boxes, 24)
        if not len(boxes):
            return none
        reg, prob = self.run(self.rnet, crops)
        keep = prob[:, 1] > t2
        boxes = np.column_stack([boxes[keep, :4], prob[keep, 1]])
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))

        # O-net: scores, boxes and the five landmarks
        crops, boxes = _crops(integral, boxes, 48)
        if not len(boxes):
            return none
        reg, points, prob = self.run(self.onet, crops)
        keep = prob[:, 1] > t3
        boxes = np.column_stack([boxes[keep, :4], prob[keep, 1]])
        reg, points = reg[keep], points[keep]
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        points = np.stack(
            [w * points[:, :5] + boxes[:, 0:1] - 1, h * points[:, 5:] + boxes[:, 1:2] - 1],
            axis=2,
        )
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, minimum=True)
        boxes, points = boxes[pick], points[pick]
        return (
            boxes[:, :4].astype(np.float32),
            boxes[:, 4].astype(np.float32),
            points.astype(np.float32),
        )
