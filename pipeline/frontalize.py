"""The `frontalize` stage: warp every frame's face to a canonical, upright (frontal) crop.

`frontalize.method`:

- `similarity` (default): a 5-point similarity transform (rotation, uniform scale,
  translation; Umeyama's least squares) maps the eyes, nose tip and mouth corners onto a
  canonical template (the ArcFace 112×112 template, scaled to `crop_size`). Fast; removes roll,
  scale and position but not yaw or pitch. The five points (`frontalize.points`) come from the
  68 dlib landmarks (`dlib`, default: eye-contour centres, nose tip, mouth corners; fitted on
  every second frame, smoothed) or are MTCNN's own (`mtcnn`: found on key frames only,
  interpolated between them); on real talking faces the first give crops on which the FER
  network separates expressions 6-8 points better (docs/faces.md).
- `hassner`: in the spirit of Hassner et al., "Effective face frontalization in unconstrained
  images" (CVPR 2015): a camera is fitted to the 68 dlib landmarks against the same points on
  a generic 3D reference face (`pipeline.faces.reference3d`, authored in this project), the reference
  surface is projected into the frame and the frame resampled there, giving a frontal view in
  the same crop geometry as `similarity`. `symmetry: soft` fills self-occluded parts from the
  mirrored side (default `none`; docs/faces.md says why). Needs `face.landmarks: dlib`.

Frames where no face was detected borrow the landmarks of the nearest frame that has one and
stay marked invalid. With 68 landmarks, head pose is estimated for every frame whatever the
method. A montage PNG of 8 evenly spaced aligned faces per video goes to the montage folder.

Output `aligned/shard-{k}.h5`, one group per video (attrs fps, method):

    frames   (T, S, S, 3) uint8  aligned RGB crops, chunked 16 frames at a time, lzf
    valid    (T,) bool           a face was found in that frame
    score    (T,) float32        detector confidence (0 where no face)
    yaw      (T,) float32        head pose, degrees, relative to the line of sight (NaN where
    pitch    (T,) float32        no face; yaw/pitch NaN too without 68 landmarks): yaw > 0
    roll     (T,) float32        turned toward image right, pitch > 0 up, roll > 0 clockwise
    visible  (T,) float32        fraction of the reference face visible at that pose
    quality  (T,) float32        score × visible (0 where no face): 1 is a confident frontal face
    points   (T, 68, 2) float32  the 68 landmarks undone of head pose (with 68 landmarks only):
                                 each point is carried back along its camera ray to the depth of
                                 the reference face under the fitted pose, rotated to frontal,
                                 in the 112×112 frontal-crop coordinates of `reference3d` (what
                                 `geometry` measures); frames without a face (or whose pose fit
                                 failed) hold the nearest frame's points, as `frames` does
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from pipeline.common import (
    VideoError,
    atomic_path,
    parse_params,
    read_csv,
    run_main,
    setup_logging,
)
from pipeline.faces.headpose import (  # noqa: F401 (the stage's warps and pose, imported from here)
    RIGID,
    Frontalizer,
    align_frame,
    project_points,
    soft_symmetry,
    to_object,
    umeyama,
)
from pipeline.faces.landmarks import five_points
from pipeline.store import Resume, file_state, frame_chunks, open_h5, shard_writer
from pipeline.video import batched, decode_options, iter_lazy, prefetched

log = logging.getLogger(__name__)

DEFAULTS = {
    "method": "similarity",
    "crop_size": 112,
    "symmetry": "none",
    "points": "dlib",
    "compression": "none",
}
POINTS = ("dlib", "mtcnn")
# the crops' HDF5 filter: lzf ships with h5py and is the cheapest, yet on real face crops it
# saves only ~20 % of the bytes for ~0.4 ms a frame, a tenth of the face stage (issue 16)
COMPRESSIONS = ("none", "lzf")
POSE_BLOCK = 32  # frames whose head poses are computed together (their arrays stay small)
METHODS = ("similarity", "hassner")


def fill_nearest(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace the landmarks of invalid frames by those of the nearest valid frame. (T, 5, 2)."""
    if not valid.any():
        raise VideoError("no frame has a face")
    idx = np.flatnonzero(valid)
    t = np.arange(len(valid))
    pos = np.clip(np.searchsorted(idx, t), 1, len(idx) - 1) if len(idx) > 1 else np.zeros_like(t)
    left, right = idx[np.maximum(pos - 1, 0)], idx[pos]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    return landmarks[nearest]


def frontalize_video(
    path: str,
    det,
    size: int,
    method: str,
    frontalizer: Frontalizer,
    decode: dict,
    allocate: Callable[[tuple[int, ...]], np.ndarray],
    tiles: dict | None = None,
    points5: str = "dlib",
    decoded: Iterable | None = None,
    cropped: bool = False,
) -> dict[str, np.ndarray]:
    """Warp every frame of one video into the (T, size, size, 3) uint8 array `allocate(shape)`
    returns (a dataset of the stage's HDF5 file, or an array in memory for prediction); return
    the per-frame pose arrays. `det`: the face stage's arrays of the video (valid, landmarks,
    scores, landmarks68 when dlib ran); `cropped`: its frames are face crops already.
    `tiles`, if given, receives the crops of the frames its montage shows (frame → crop).
    `points5`: the similarity warp's five points from the 68 landmarks (`dlib`, when the video
    has them) or MTCNN's own (`mtcnn`). `decoded`, if given, are the video's frames decoded
    already (iter_lazy's)."""
    valid = det["valid"][:]
    n = len(valid)
    landmarks = fill_nearest(det["landmarks"][:], valid)
    lm68 = det["landmarks68"][:] if "landmarks68" in det else None
    if lm68 is not None and np.isnan(lm68[valid]).all():
        lm68 = None
    if method == "hassner" and lm68 is None:
        raise VideoError(
            f"{path}: frontalize.method hassner needs 68-point landmarks; "
            "set face.landmarks: dlib (and rerun detect_faces)"
        )
    if lm68 is not None:
        lm68 = fill_nearest(lm68, valid)
    if points5 == "dlib" and lm68 is not None and not cropped:
        landmarks = five_points(lm68)
    frames = allocate((n, size, size, 3))
    pose = {k: np.full(n, np.nan, np.float32) for k in ("yaw", "pitch", "roll", "visible")}
    points = np.full((n, 68, 2), np.nan, np.float32) if lm68 is not None else None
    frontalizer.reset()
    posed, first = None, 0  # poses of the frames [first, first + POSE_BLOCK)
    shown = set(montage_picks(n)) if tiles is not None else set()
    t = 0
    source = iter_lazy(path, **decode) if decoded is None else decoded
    for batch in batched(prefetched(source), 16):
        batch = batch[: max(0, n - t)]
        crops = []
        for j, frame in enumerate(batch):
            i = t + j
            if lm68 is not None and not cropped and (posed is None or i >= first + POSE_BLOCK):
                block = lm68[i : i + POSE_BLOCK]
                posed = frontalizer.poses(block, frame.shape, render=method == "hassner")
                first = i
            k = i - first
            fitted = posed is not None and posed["ok"][k]
            crop = None
            if fitted:  # else (a degenerate landmark set) similarity for this frame
                for key in ("yaw", "pitch", "roll", "visible"):
                    pose[key][i] = posed[key][k]
                points[i] = posed["points"][k]
                if method == "hassner":
                    view = (posed["render_rot"][k], posed["render_tvec"][k])
                    crop = frontalizer.render(
                        frame, *view, posed["matrix"], posed["render_seen"][k]
                    )
            if crop is None:
                crop, roll = align_frame(frame, landmarks[i], size)
                if not fitted:
                    pose["roll"][i] = roll
            crops.append(crop)
            if i in shown:
                tiles[i] = crop
        if crops:
            frames[t : t + len(crops)] = np.stack(crops)
        t += len(batch)
    if t < n:
        raise VideoError(f"{path}: decoded {t} frames, detection saw {n}")
    if cropped:  # already face crops: frontal by definition
        for key in pose:
            pose[key][:] = 1.0 if key == "visible" else 0.0
    scores = det["scores"][:]
    visible = np.where(np.isnan(pose["visible"]), 1.0, pose["visible"])
    pose["quality"] = (scores * visible * valid).astype(np.float32)
    for key in ("yaw", "pitch", "roll", "visible"):
        pose[key][~valid] = np.nan
    if points is not None:
        fitted = np.isfinite(points).all((1, 2))
        if fitted.any():  # like the crops: frames without a face hold the nearest face's
            pose["points"] = fill_nearest(points, fitted)
    return pose


def crops_dataset(group: h5py.Group, compression: str, shape: tuple[int, ...]) -> h5py.Dataset:
    """The stage's `frames` dataset of a video: chunked by clip, filtered by `compression`."""
    return group.create_dataset(
        "frames",
        shape=shape,
        dtype=np.uint8,
        chunks=frame_chunks(shape),
        compression=None if compression == "none" else compression,
    )


def montage_picks(n: int, tiles: int = 8) -> list[int]:
    """The frames a montage of a video of n frames shows: `tiles` evenly spaced."""
    return np.unique(np.linspace(0, n - 1, min(tiles, n)).round().astype(int)).tolist()


def montage(frames, valid: np.ndarray, path: Path, tile: int = 64):
    """A strip of evenly spaced aligned faces (`montage_picks`; red frame: no face detected
    there). `frames`: the aligned frames, or a mapping from those frames to their crops."""
    import cv2
    from PIL import Image

    strip = []
    for t in montage_picks(len(valid)):
        face = cv2.resize(frames[t], (tile, tile), interpolation=cv2.INTER_AREA)
        if not valid[t]:
            face[:2], face[-2:], face[:, :2], face[:, -2:] = 255, 255, 255, 255
            face[:2, :, 1:], face[-2:, :, 1:], face[:, :2, 1:], face[:, -2:, 1:] = 0, 0, 0, 0
        strip.append(face)
    with atomic_path(path) as tmp:
        # zlib level 1: 4x faster than PIL's default 6 (~3 against ~12 ms), 7 % larger
        Image.fromarray(np.concatenate(strip, axis=1)).save(tmp, format="PNG", compress_level=1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Align the faces of one shard to a canonical crop.")
    ap.add_argument(
        "--videos", required=True, help="results/dataset/probed.csv (the dataset stage's table)"
    )
    ap.add_argument("--faces", required=True, help="faces/shard-{k}.h5 of the same shard")
    ap.add_argument("--out", required=True, help="aligned/shard-{k}.h5")
    ap.add_argument("--montages", required=True, help="folder for one montage PNG per video")
    ap.add_argument("--params", default="{}", help="the config's `frontalize` section as JSON")
    ap.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    return ap.parse_args(argv)


def frontalize_shard(
    videos, faces_path: str, out_path: str, montages: Path, params: dict, on_error: str = "skip"
) -> dict:
    """Align every video of the shard `faces_path` (rows of `videos` indexed by video_id) into
    `out_path`, one montage per video in `montages`, resuming from its parts; return skipped."""
    method = params["method"]
    if method not in METHODS:
        raise ValueError(f"unknown frontalize.method {method!r}; known: {', '.join(METHODS)}")
    points5 = params.get("points", "dlib")
    if points5 not in POINTS:
        raise ValueError(f"unknown frontalize.points {points5!r}; known: {', '.join(POINTS)}")
    compression = params.get("compression", "none")
    if compression not in COMPRESSIONS:
        known = ", ".join(COMPRESSIONS)
        raise ValueError(f"unknown frontalize.compression {compression!r}; known: {known}")
    size = int(params["crop_size"])
    frontalizer = Frontalizer(size, params["symmetry"])
    montages = Path(montages)
    montages.mkdir(parents=True, exist_ok=True)
    resume = Resume(
        out_path, {"stage": "frontalize", "params": params, "faces": file_state(faces_path)}
    )
    with (
        open_h5(faces_path) as faces,
        shard_writer(out_path, params=params) as (out, skipped),
    ):
        for vid in faces:
            det = faces[vid]
            rec = videos.loc[vid].to_dict()
            extra = [repr(sorted(rec.items())), file_state(rec["path"])]
            if resume.restore(vid, out, skipped, extra):
                if vid in out:  # the montage folder is an output: Snakemake removed it
                    montage(out[vid]["frames"], out[vid]["valid"][:], montages / f"{vid}.png")
                continue
            group = out.create_group(vid)
            tiles: dict[int, np.ndarray] = {}
            try:
                pose = frontalize_video(
                    rec["path"],
                    det,
                    size,
                    method,
                    frontalizer,
                    decode_options(rec),
                    partial(crops_dataset, group, compression),
                    tiles,
                    points5,
                    cropped=bool(det.attrs.get("cropped", False)),
                )
            except VideoError as err:
                if on_error == "fail":
                    raise
                del out[vid]
                log.warning("skipping %s: %s", vid, err)
                skipped[vid] = str(err)
                resume.save(vid, out, skipped, extra)
                continue
            valid = det["valid"][:]
            group.create_dataset("valid", data=valid)
            group.create_dataset("score", data=det["scores"][:])
            for key, values in pose.items():
                group.create_dataset(key, data=values)
            group.attrs["fps"] = det.attrs["fps"]
            group.attrs["method"] = method
            montage(tiles, valid, montages / f"{vid}.png")
            resume.save(vid, out, skipped, extra)
    resume.clear()
    return skipped


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = {**DEFAULTS, **parse_params(args.params)}
    videos = read_csv(args.videos).set_index("video_id", drop=False)
    skipped = frontalize_shard(
        videos, args.faces, args.out, Path(args.montages), params, args.on_error
    )
    log.info("aligned %s (%s): %d skipped", args.out, params["method"], len(skipped))


if __name__ == "__main__":
    run_main(main)
