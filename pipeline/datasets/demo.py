"""The demo dataset: labelled expression videos made from public-domain portraits.

Two portraits ship with installed packages: NASA's astronaut Eileen Collins
(`skimage.data.astronaut`) and the US Navy photo of Grace Hopper (matplotlib's sample data).
Each synthetic subject is one of them with its own identity (mirroring, face geometry, skin
tone, expressiveness). Each video goes neutral → onset → apex for one of six basic emotions
through smooth landmark-driven warps of the brows, eyelids, cheeks, nose wings, lips and mouth
corners (roughly the action units of Ekman's prototypes), with head motion (roll, small yaw,
translation, scale), lighting drift and sensor noise. Classes differ only in the face's
deformation: identity, motion, light and noise are drawn independently of the label.

    python -m pipeline.datasets.demo --out data/demo --params '{"subjects": 10, ...}'

writes `data/demo/videos/*.mp4`, one annotation file per video in `data/demo/annotations/`
(its continuous ground truth from the render parameters, for `task: regress`: `time` in
seconds, `intensity` — the expression's strength in [0, 1] as rendered on that frame — and
`valence` — intensity × the emotion's sign and weight, `VALENCE`) and then
`data/demo/sheet.csv` (path, subject, label, annotation).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import digest, parse_params, run_main, setup_logging, write_csv_atomic
from pipeline.encode import write_video

log = logging.getLogger(__name__)

EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
# valence of each emotion at full intensity (the demo's signed valence track)
VALENCE = {
    "anger": -0.6,
    "disgust": -0.6,
    "fear": -0.7,
    "happiness": 0.8,
    "sadness": -0.7,
    "surprise": 0.2,
}

# Five MTCNN landmarks (left eye, right eye, nose, left and right mouth corner; x, y in pixels)
# of each base portrait, measured once with facenet-pytorch's MTCNN (p > 0.999).
PORTRAIT_LANDMARKS = {
    "astronaut": [(205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2), (245.3, 141.9)],
    "hopper": [(221.7, 192.2), (309.8, 186.1), (269.4, 239.2), (232.7, 279.6), (306.6, 275.9)],
}

DEFAULTS = {
    "subjects": 10,
    "repetitions": 2,
    "min_frames": 30,
    "max_frames": 72,
    "width": 320,
    "height": 240,
    "fps": 30,
    "seed": 0,
}


def load_portrait(name: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) image of a base portrait, read from an installed package."""
    if name == "astronaut":
        from skimage.data import astronaut

        return astronaut()
    if name == "hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
            return np.asarray(img.convert("RGB"))
    raise KeyError(f"unknown portrait {name!r}; known: {sorted(PORTRAIT_LANDMARKS)}")


# --- the face model: control points in a face frame (u: left→right eye, v: down), IOD units ---

# name: (anchor landmark index or "mouth", offset (du, dv), side: -1 left, +1 right, 0 centre, sigma)
CONTROL_POINTS: dict[str, tuple] = {}
for _side, _eye in ((-1, 0), (1, 1)):
    _s = "L" if _side < 0 else "R"
    CONTROL_POINTS.update(
        {
            f"brow_in_{_s}": (_eye, (-0.15 * _side, -0.33), _side, 0.14),
            f"brow_mid_{_s}": (_eye, (0.0, -0.38), _side, 0.14),
            f"brow_out_{_s}": (_eye, (0.22 * _side, -0.30), _side, 0.14),
            f"lid_up_{_s}": (_eye, (0.0, -0.09), _side, 0.07),
            f"lid_lo_{_s}": (_eye, (0.0, 0.08), _side, 0.07),
            f"cheek_{_s}": (_eye, (0.05 * _side, 0.50), _side, 0.22),
            f"nose_wing_{_s}": (2, (0.18 * _side, 0.0), _side, 0.10),
            f"mouth_{_s}": (3 if _side < 0 else 4, (0.0, 0.0), _side, 0.12),
        }
    )
CONTROL_POINTS.update(
    {
        "lip_up": ("mouth", (0.0, -0.10), 0, 0.14),
        "lip_lo": ("mouth", (0.0, 0.12), 0, 0.14),
        "chin": ("mouth", (0.0, 0.45), 0, 0.28),
    }
)

# Apex displacements per emotion: point-name prefix → (outward, down) in IOD units. "outward"
# moves a left point left and a right point right; prefixes without _L/_R apply to both sides.
EXPRESSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "happiness": {
        "mouth": (0.10, -0.10),
        "cheek": (0.02, -0.07),
        "lid_lo": (0.0, -0.035),
        "lip_lo": (0.0, 0.02),
    },
    "sadness": {
        "mouth": (-0.02, 0.09),
        "brow_in": (-0.02, -0.09),
        "brow_out": (0.0, 0.04),
        "lid_up": (0.0, 0.025),
        "lip_lo": (0.0, -0.03),
        "chin": (0.0, -0.04),
    },
    "surprise": {
        "brow": (0.0, -0.14),
        "lid_up": (0.0, -0.045),
        "lip_up": (0.0, -0.02),
        "lip_lo": (0.0, 0.16),
        "chin": (0.0, 0.18),
        "mouth": (-0.05, 0.06),
    },
    "anger": {
        "brow_in": (-0.06, 0.10),
        "brow_mid": (0.0, 0.06),
        "lid_up": (0.0, -0.02),
        "lid_lo": (0.0, -0.02),
        "lip_up": (0.0, 0.03),
        "lip_lo": (0.0, -0.04),
        "mouth": (-0.04, 0.0),
        "nose_wing": (0.03, 0.0),
    },
    "disgust": {
        "lip_up": (0.0, -0.09),
        "nose_wing": (0.02, -0.06),
        "brow_in": (-0.03, 0.06),
        "mouth": (0.0, 0.04),
        "lid_lo": (0.0, -0.03),
        "lip_lo": (0.0, -0.02),
    },
    "fear": {
        "brow_in": (-0.05, -0.10),
        "brow_mid": (0.0, -0.08),
        "lid_up": (0.0, -0.05),
        "mouth": (0.10, 0.03),
        "lip_lo": (0.0, 0.09),
        "chin": (0.0, 0.06),
    },
}
# How far the lips part at apex (IOD units): shaded as a dark mouth opening.
MOUTH_OPENING = {"surprise": 0.22, "fear": 0.08}


@dataclass
class Face:
    """Control points of one face in portrait pixel coordinates."""

    centers: np.ndarray  # (P, 2)
    sigmas: np.ndarray  # (P,) pixels
    u: np.ndarray  # (2,) unit vector left eye → right eye
    v: np.ndarray  # (2,) unit vector pointing down the face
    iod: float  # inter-ocular distance, pixels
    center: np.ndarray  # (2,) mean of the five landmarks
    mouth: np.ndarray  # (2,) mouth centre


def face_model(landmarks: np.ndarray) -> Face:
    lm = np.asarray(landmarks, dtype=np.float64)
    axis = lm[1] - lm[0]
    iod = float(np.linalg.norm(axis))
    u = axis / iod
    v = np.array([-u[1], u[0]])
    mouth = (lm[3] + lm[4]) / 2
    centers, sigmas = [], []
    for anchor, (du, dv), _side, sigma in CONTROL_POINTS.values():
        origin = mouth if anchor == "mouth" else lm[anchor]
        centers.append(origin + iod * (du * u + dv * v))
        sigmas.append(sigma * iod)
    return Face(np.array(centers), np.array(sigmas), u, v, iod, lm.mean(axis=0), mouth)


def expression_vectors(face: Face, emotion: str) -> np.ndarray:
    """(P, 2) apex displacement of every control point for `emotion`, in portrait pixels."""
    table = EXPRESSIONS[emotion]
    out = np.zeros((len(CONTROL_POINTS), 2))
    for i, (name, (_a, _o, side, _s)) in enumerate(CONTROL_POINTS.items()):
        for prefix, (outward, down) in table.items():
            if name == prefix or name.startswith(prefix + "_"):
                du = outward * (side if side else 0.0)
                out[i] = face.iod * (du * face.u + down * face.v)
    return out


def displacement(points: np.ndarray, face: Face, vectors: np.ndarray) -> np.ndarray:
    """Smooth displacement field at `points` (N, 2): Gaussian radial basis around control points."""
    points = points.astype(np.float32)
    c = face.centers.astype(np.float32)
    d2 = (points**2).sum(1)[:, None] + (c**2).sum(1)[None, :] - 2 * points @ c.T  # (N, P)
    weight = np.exp(-np.maximum(d2, 0) / (2 * face.sigmas.astype(np.float32)[None, :] ** 2))
    return weight @ vectors.astype(np.float32)  # (N, 2)


# --- identities and videos ---


@dataclass
class Identity:
    portrait: str
    mirror: bool
    stretch: tuple[float, float]
    tone: np.ndarray  # (3,) RGB gain
    shape: np.ndarray  # (P, 2) identity warp, IOD units
    expressiveness: float


def make_identity(index: int, rng: np.random.Generator) -> Identity:
    return Identity(
        portrait=("astronaut", "hopper")[index % 2],
        mirror=bool((index // 2) % 2),
        stretch=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.92, 1.08))),
        tone=rng.uniform(0.62, 1.1)
        * np.array([1.0, rng.uniform(0.9, 1.0), rng.uniform(0.8, 0.97)]),
        shape=rng.normal(0.0, 0.035, size=(len(CONTROL_POINTS), 2)),
        expressiveness=float(rng.uniform(0.8, 1.2)),
    )


def intensity_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) expression intensity in [0, 1]: neutral, smooth onset, apex held to the end."""
    onset = rng.uniform(0.1, 0.3) * n
    apex = min(onset + rng.uniform(0.3, 0.5) * n, n - 1.0)
    x = np.clip((np.arange(n) - onset) / max(apex - onset, 1.0), 0.0, 1.0)
    curve = x * x * (3 - 2 * x)
    return np.clip(curve + rng.normal(0, 0.015, n) * (curve > 0), 0.0, 1.0)


def render_video(
    portrait: np.ndarray,
    landmarks: np.ndarray,
    identity: Identity,
    emotion: str,
    n_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    track: list | None = None,
) -> Iterator[np.ndarray]:
    """Yield `n_frames` RGB uint8 frames of shape (height, width, 3); `track`, if given,
    receives the (n_frames,) expression intensity the frames are rendered with."""
    import cv2

    width, height = size
    face = face_model(landmarks)
    image = np.clip(
        portrait.astype(np.float32) * identity.tone[None, None, :].astype(np.float32), 0, 255
    )
    apex = expression_vectors(face, emotion) * identity.expressiveness * rng.uniform(0.9, 1.1)
    shape = identity.shape * face.iod
    level = intensity_profile(n_frames, rng)
    if track is not None:
        track.append(level)
    opening = MOUTH_OPENING.get(emotion, 0.0) * face.iod * identity.expressiveness

    # Head motion: slow sinusoids with random phases (degrees, IOD units, ratio).
    t = np.arange(n_frames) / 30.0
    roll = rng.uniform(-4, 4) + rng.uniform(0, 4) * np.sin(
        2 * np.pi * t / rng.uniform(1.5, 4) + rng.uniform(0, 6.3)
    )
    yaw = rng.uniform(-8, 8) + rng.uniform(0, 6) * np.sin(
        2 * np.pi * t / rng.uniform(1.5, 4) + rng.uniform(0, 6.3)
    )
    shift = rng.uniform(-0.4, 0.4, 2)[None, :] + rng.uniform(0, 0.25) * np.stack(
        [np.sin(2 * np.pi * t / rng.uniform(2, 5) + p) for p in rng.uniform(0, 6.3, 2)], axis=1
    )
    zoom = 1 + rng.uniform(0, 0.06) * np.sin(
        2 * np.pi * t / rng.uniform(2, 5) + rng.uniform(0, 6.3)
    )
    light_gradient = rng.uniform(-0.25, 0.25) + rng.uniform(0, 0.15) * np.sin(
        2 * np.pi * t / rng.uniform(2, 6)
    )
    light_level = rng.uniform(-0.1, 0.1) + rng.uniform(-0.12, 0.12) * t / max(t[-1], 1e-6)

    # The warp is smooth: compute it on a half-resolution grid, then resize the maps.
    coarse = ((width + 1) // 2, (height + 1) // 2)
    ys, xs = np.mgrid[0 : coarse[1], 0 : coarse[0]].astype(np.float64) * 2
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (N, 2) frame pixels
    gradient = ((np.arange(width) - width / 2) / width)[None, :].astype(np.float32)
    frame_iod = 0.2 * height
    mirror = -1.0 if identity.mirror else 1.0
    for i in range(n_frames):
        # frame pixel → portrait pixel (inverse of: centre, stretch/yaw, scale, roll, mirror, shift)
        a = np.deg2rad(roll[i])
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        scale = frame_iod / face.iod * zoom[i]
        squash = np.diag(
            [mirror * identity.stretch[0] * np.cos(np.deg2rad(yaw[i])), identity.stretch[1]]
        )
        forward = scale * rot @ squash  # portrait offset → frame offset
        frame_center = (
            np.array([width / 2, height / 2])
            + (shift[i] + [np.sin(np.deg2rad(yaw[i])) * 0.4, 0]) * frame_iod
        )
        p = (grid - frame_center) @ np.linalg.inv(forward).T + face.center  # (N, 2)
        vectors = shape + level[i] * apex
        src = p - displacement(p, face, vectors)
        mapx, mapy = (
            cv2.resize(src[:, k].reshape(coarse[1], coarse[0]).astype(np.float32), (width, height))
            for k in (0, 1)
        )
        frame = cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if opening > 0 and level[i] > 0.05:
            # a dark mouth opening between the parted lips, in face coordinates
            gap = opening * level[i]
            rel = p - (face.mouth + face.v * (0.02 * face.iod + gap / 2))
            du, dv = rel @ face.u, rel @ face.v
            inside = (du / (0.28 * face.iod)) ** 2 + (dv / max(gap * 0.55, 1.0)) ** 2
            shade = np.clip(1.2 - inside, 0, 1).reshape(coarse[1], coarse[0]) * 0.7
            shade = cv2.resize(shade.astype(np.float32), (width, height))
            frame = frame * (1 - shade[..., None])
        light = 1 + light_level[i] + light_gradient[i] * gradient  # (1, W)
        noise = rng.standard_normal(frame.shape, dtype=np.float32) * 3.0
        frame = frame * light[..., None] + noise
        yield np.clip(frame, 0, 255).astype(np.uint8)


def render_subject(
    subject: int,
    emotion: str,
    n_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    seed: int = 0,
    track: list | None = None,
) -> list[np.ndarray]:
    """The frames of synthetic subject number `subject` (identity drawn from `seed`) showing
    `emotion` (`track`: see render_video)."""
    identity = make_identity(subject, np.random.default_rng([seed, subject]))
    portrait = load_portrait(identity.portrait)
    landmarks = np.array(PORTRAIT_LANDMARKS[identity.portrait])
    return list(render_video(portrait, landmarks, identity, emotion, n_frames, size, rng, track))


def write_subject(out_dir: Path, p: dict, s: int) -> list[dict]:
    """Render and encode all videos of subject number `s`; return their sheet rows."""
    subject = f"s{s + 1:02d}"
    rows = []
    for e, emotion in enumerate(EMOTIONS):
        for r in range(p["repetitions"]):
            rng = np.random.default_rng([p["seed"], s, e, r, 1])
            n = int(rng.integers(p["min_frames"], p["max_frames"] + 1))
            track: list = []
            size = (p["width"], p["height"])
            frames = render_subject(s, emotion, n, size, rng, seed=p["seed"], track=track)
            stem = f"{subject}_{emotion}_{r + 1}"
            name = f"videos/{stem}.mp4"
            tmp = out_dir / f"{name}.tmp.mp4"
            write_video(tmp, frames, fps=p["fps"])
            tmp.replace(out_dir / name)
            level = track[0]
            notes = pd.DataFrame(
                {
                    "time": np.round(np.arange(n) / p["fps"], 6),
                    "intensity": np.round(level, 5),
                    "valence": np.round(level * VALENCE[emotion], 5),
                }
            )
            write_csv_atomic(out_dir / "annotations" / f"{stem}.csv", notes)
            rows.append(
                {
                    "path": name,
                    "subject": subject,
                    "label": emotion,
                    "annotation": f"annotations/{stem}.csv",
                }
            )
    log.info("subject %s: %d videos", subject, len(rows))
    return rows


def generate(out_dir: str | Path, params: dict, workers: int = 1) -> pd.DataFrame:
    """Write the demo videos and the sheet under `out_dir`; return the sheet.

    Every video has its own seed, so the output does not depend on `workers`.
    """

    p = {**DEFAULTS, **params}
    if p["subjects"] < 2:
        raise ValueError("demo.subjects must be >= 2 for subject-independent folds")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    subjects = range(p["subjects"])
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(
                pool.map(write_subject, [out_dir] * len(subjects), [p] * len(subjects), subjects)
            )
    else:
        parts = [write_subject(out_dir, p, s) for s in subjects]
    sheet = pd.DataFrame([row for part in parts for row in part])
    write_csv_atomic(out_dir / "sheet.csv", sheet)
    log.info("demo dataset %s: %d videos in %s", digest(p), len(sheet), out_dir)
    return sheet


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (videos/ and sheet.csv)")
    ap.add_argument("--params", default="{}", help="the config's `demo` section as JSON")
    ap.add_argument("--threads", type=int, default=1, help="worker processes")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    generate(args.out, parse_params(args.params), workers=args.threads)


if __name__ == "__main__":
    run_main(main)
