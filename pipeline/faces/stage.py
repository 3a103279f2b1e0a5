"""The `detect_faces` stage: the primary subject's face box and landmarks in every frame.

For each video of one shard, frames are decoded in a stream (upright, at `dataset.target_fps`)
and facenet-pytorch's MTCNN (weights ship inside the wheel) runs on every `detect_every`-th
frame (and the last):

- a full search on a copy downscaled to `detect_width` pixels at the first frame, whenever
  the face is lost, and at least every `full_every` frames;
- otherwise a search in a small region around the previous face, rescaled so that the face
  is about 64 pixels wide (a few pyramid levels instead of a dozen).

Boxes are mapped back to source pixels. Detections are linked into tracks (`Tracker`); one
primary subject is followed, chosen by size, centrality and persistence; other faces are
recorded apart. Between two detections of the primary track that agree (moved and rescaled by
less than `max_motion` of its size) boxes and landmarks are interpolated; otherwise every frame
in between is detected too, so fast motion, a lost face or a cut gets full detection. Gaps of
up to `max_gap` frames without a face between two agreeing detections are interpolated
(`filled`). dlib's 68-point predictor (`face.landmarks: dlib`), started from the MTCNN box,
runs on every `landmark_every`-th frame with a face, on key frames, at both ends of every run of
one face and on every frame where all were detected; the frames in between get the points
interpolated from their neighbours (every second frame: 0.3 % of the interocular distance more
error than dlib on every frame, at half the cost, on real talking faces); landmarks are then
smoothed over time (Gaussian, `smooth` frames)
within each run of one track. Frames without a face are marked invalid, never dropped, so frame
indices stay exact. Videos that are already face crops (`detector: none`, or frames of at most
160 pixels where no face is found, as in 48×48 FER datasets) get the whole frame as the face
(group attr `cropped`). Memory is bounded by `detect_every` decoded frames, whatever the
video's length.

Output `faces/shard-{k}.h5`, one group per video (attrs fps, cropped):

    boxes       (T, 4) float32     x1, y1, x2, y2 in source pixels (NaN where no face)
    scores      (T,)   float32     detector confidence (0 where no face)
    landmarks   (T, 5, 2) float32  eyes, nose, mouth corners (NaN where no face)
    landmarks68 (T, 68, 2) float32 iBUG 68-point mark-up (only with face.landmarks: dlib)
    valid       (T,)   bool        a face was found (detected or interpolated) in that frame
    detected    (T,)   bool        the detector ran on that frame (else interpolated)
    filled      (T,)   bool        the detector ran but missed; interpolated across the gap
    n_faces     (T,)   uint8       how many faces the detector saw (0 on interpolated frames)
    track       (T,)   int32       track id of the primary face (-1 where no face)
    others      (N, 7) float32     every other face seen: frame, track, x1, y1, x2, y2, score;
                                   with face.identity dlib or a reference photo (N, 8), the
                                   person as well (0: the subject; see pipeline.faces.identity)
    time        (T,)   float64     presentation time of each frame, seconds
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.common import (
    VideoError,
    parse_params,
    read_csv,
    run_main,
    set_threads,
    setup_logging,
    shard_of,
)
from pipeline.faces.detector import DEFAULTS, Detector
from pipeline.faces.landmarks import smooth
from pipeline.faces.reference3d import FRONTAL_68, TEMPLATE_112
from pipeline.faces.tracking import Face, Track, Tracker
from pipeline.store import Resume, file_state, shard_writer
from pipeline.video import LazyFrame, decode_options, iter_lazy, prefetched

log = logging.getLogger(__name__)

CROPPED_MAX = 160  # a video of frames this small where no face is found is taken as face crops


def detect_video(
    detector: Detector,
    path: str,
    n_frames: int | None = None,
    fps: float = 30.0,
    decode: dict | None = None,
    frames: Iterable[LazyFrame] | None = None,
    reference: str | None = None,
) -> dict[str, np.ndarray]:
    """Detect (or interpolate) the primary subject's face in every frame of one video.

    `n_frames` (from probing) only sizes the arrays; the video's end is found by decoding.
    `fps` times the frames of image folders, which carry no timestamps; `decode` holds the
    iter_lazy options (target_fps, folder_fps) of this video. `frames`, if given, are its
    decoded frames (iter_lazy's), e.g. for a caller that keeps them. `reference`: a photo of
    the person to follow (identities on for this video, see pipeline.faces.identity).
    Returns the arrays of the module docstring, one row per decoded frame.
    """
    p = detector.p
    crops = p["detector"] == "none"
    every = max(1, int(p["detect_every"]))
    full_every = max(every, int(p["full_every"]))
    every68 = max(1, int(p["landmark_every"]))
    track = Track(max(n_frames or 0, 1))
    tracker = Tracker(detector.identities(reference))
    pending: list[tuple[int, LazyFrame]] = []  # frames since the last detection (< every)
    last: tuple[int, Face | None] | None = None
    last_full = -full_every
    shape: tuple[int, int] | None = None

    def landmarks68(frames: list[tuple[int, LazyFrame]]) -> None:
        """dlib on the frames since the last key frame: on every `landmark_every`-th frame, the
        key frame, each end of a run of one face, and every frame when they were all detected
        (motion or a cut); linear in between, from the nearest frames that have them."""
        if detector.landmarker is None:
            return
        dense = any(track.detected[t] for t, _ in frames[:-1])

        def same(t: int, u: int) -> bool:
            return (
                0 <= u < len(track.scores)
                and track.scores[u] > 0
                and track.track[u] == track.track[t]
            )

        done = []
        for i, (t, frame) in enumerate(frames):
            if track.scores[t] <= 0:
                continue
            inner = i + 1 < len(frames) and same(t, t - 1) and same(t, t + 1)
            if dense or not inner or t % every68 == 0:
                track.landmarks68[t] = detector.landmarker(frame.grey(), track.boxes[t])
                done.append(t)
        if last is not None and track.scores[last[0]] > 0:
            done.insert(0, last[0])  # the previous key frame, which has them
        for t, _ in frames:
            if track.scores[t] > 0 and t not in done:
                a = max(u for u in done if u < t)
                b = min(u for u in done if u > t)
                w = (t - a) / (b - a)
                track.landmarks68[t] = (1 - w) * track.landmarks68[a] + w * track.landmarks68[b]

    def key(t: int, frame: LazyFrame) -> None:
        nonlocal last, last_full, pending
        previous = last[1] if last else None
        full = t - last_full >= full_every
        faces = detector.detect(frame, previous, full=full)
        if full or previous is None:
            last_full = t
        tracker.link(faces, frame)
        if last is not None and pending:
            t0, f0 = last
            if detector.agree(f0, tracker.pick(faces, shape)):
                face = tracker.choose(t, faces, shape)
                track.put(t, face)
                track.interpolate(t0, t)
            else:  # motion, a lost face or a cut: detect every frame in between
                guide = f0
                for tp, fp in pending:
                    near = detector.detect(fp, guide or previous)
                    tracker.link(near, fp)
                    guide = tracker.choose(tp, near, shape)
                    track.put(tp, guide)
                tracker.link(faces, frame)  # again: tracks moved on in between
                face = tracker.choose(t, faces, shape)
                track.put(t, face)
        else:
            face = tracker.choose(t, faces, shape)
            track.put(t, face)
        landmarks68([*pending, (t, frame)])
        pending = []
        last = (t, face)

    t = -1
    times: list[float] = []
    source = iter_lazy(path, **(decode or {})) if frames is None else frames
    for t, frame in enumerate(prefetched(source)):
        track.grow(t + 1)
        times.append(t / fps if frame.time is None else frame.time)
        shape = shape or frame.shape
        if crops:
            continue
        if t % every == 0:
            key(t, frame)
        else:
            pending.append((t, frame))
    if t < 0:
        raise VideoError(f"{path}: no frames decoded")
    if pending:  # the last frame is always detected
        tl, fl = pending.pop()
        key(tl, fl)
    n = t + 1
    if n_frames is not None and n != n_frames:
        log.warning("%s: %d frames decoded, %d probed; keeping %d", path, n, n_frames, n)
    with68 = detector.landmarker is not None
    if not crops:
        track.fill_gaps(n, int(p["max_gap"]), detector.agree)
    arrays = track.arrays(n, with68)
    if not crops and not arrays["valid"].any() and max(shape) <= CROPPED_MAX:
        log.warning(
            "%s: no face found in %d frames of at most %d pixels: taken as face crops",
            path,
            n,
            CROPPED_MAX,
        )
        crops = True
    if crops:
        arrays = cropped(n, *shape, with68=with68)
    else:
        for name in ("landmarks", "landmarks68") if with68 else ("landmarks",):
            arrays[name] = smooth(arrays[name], arrays["valid"], p["smooth"], arrays["track"])
        arrays["others"] = tracker.others_array()
    arrays["time"] = np.asarray(times, np.float64)
    return arrays


def cropped(n: int, height: int, width: int, with68: bool = False) -> dict[str, np.ndarray]:
    """Arrays for n frames that are already face crops (e.g. 48×48 FER frames).

    The face is the whole frame, its landmarks the canonical templates scaled to the frame,
    so alignment reduces to a resize. `detected` is false and the group gets attr `cropped`.
    """
    scale = np.array([width, height]) / 112.0
    out = {
        "boxes": np.tile(np.array([0, 0, width, height], np.float32), (n, 1)),
        "scores": np.ones(n, np.float32),
        "landmarks": np.tile((TEMPLATE_112 * scale).astype(np.float32), (n, 1, 1)),
        "valid": np.ones(n, bool),
        "detected": np.zeros(n, bool),
        "filled": np.zeros(n, bool),
        "n_faces": np.ones(n, np.uint8),
        "track": np.zeros(n, np.int32),
        "others": np.zeros((0, 7), np.float32),
        "cropped": True,
    }
    if with68:
        out["landmarks68"] = np.tile((FRONTAL_68 * scale).astype(np.float32), (n, 1, 1))
    return out


def torch_threads(threads: int) -> int:
    """Torch's share of the stage's `threads`: all but one. Its networks are small (MTCNN on
    downscaled key frames, tracking crops), so a second intra-op thread gains little and its
    spinning steals the core that decoding ahead (`video.prefetched`, ffmpeg's threads) needs:
    at 2 threads, torch at 1 ran the stage 10-22 % faster than torch at 2 (issue 16)."""
    return max(1, int(threads) - 1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.faces", description="Detect faces in the videos of one shard."
    )
    ap.add_argument(
        "--videos", required=True, help="results/dataset/probed.csv (the dataset stage's table)"
    )
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--out", required=True, help="faces/shard-{k}.h5")
    ap.add_argument("--params", default="{}", help="the config's `face` section as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    return ap.parse_args(argv)


def reference_of(rec: dict) -> str | None:
    """The reference photo of a videos.csv row (column `reference`), if it has one."""
    value = rec.get("reference")
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        return None
    return str(value)


def detect_shard(
    videos,
    out: str,
    params: dict,
    on_error: str = "skip",
    detector: Detector | None = None,
    **attrs,
) -> tuple[int, int, dict]:
    """Detect the faces of `videos` (rows of videos.csv) into the shard file `out` (file attrs
    `attrs` and params), resuming from its parts; return (frames, frames with a face, skipped).
    """
    detector = detector or Detector(params)
    n_frames = n_valid = 0
    resume = Resume(out, {"stage": "detect_faces", "params": params})
    with shard_writer(out, **attrs, params=params) as (f, skipped):
        for rec in videos.sort_values("video_id").to_dict("records"):
            vid = rec["video_id"]
            photo = reference_of(rec)
            extra = [repr(sorted(rec.items())), file_state(rec["path"])]
            extra += [file_state(photo)] if photo else []
            if resume.restore(vid, f, skipped, extra):
                if vid in f:
                    n_frames += len(f[vid]["valid"])
                    n_valid += int(f[vid]["valid"][:].sum())
                continue
            try:
                arrays = detect_video(
                    detector,
                    rec["path"],
                    int(rec["n_frames"]),
                    float(rec["fps"]),
                    decode_options(rec),
                    reference=photo,
                )
                if not arrays["valid"].any():
                    whose = f" of the person in the reference photo {photo}" if photo else ""
                    raise VideoError(
                        f"{rec['path']}: no face{whose} found in any of "
                        f"{len(arrays['valid'])} frames"
                    )
            except VideoError as err:
                if on_error == "fail":
                    raise
                log.warning("skipping %s: %s", rec["video_id"], err)
                skipped[rec["video_id"]] = str(err)
                resume.save(vid, f, skipped, extra)
                continue
            group = f.create_group(rec["video_id"])
            group.attrs["cropped"] = bool(arrays.pop("cropped", False))
            for name, array in arrays.items():
                group.create_dataset(name, data=array)
            group.attrs["fps"] = float(rec["fps"])
            group.attrs["primary_track"] = int(
                np.bincount(arrays["track"][arrays["track"] >= 0]).argmax()
            )
            n_frames += len(arrays["valid"])
            n_valid += int(arrays["valid"].sum())
            resume.save(vid, f, skipped, extra)
    resume.clear()
    return n_frames, n_valid, skipped


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(torch_threads(args.threads))
    params = {**DEFAULTS, **parse_params(args.params)}
    videos = read_csv(args.videos)
    mine = videos[[shard_of(v, args.shards) == args.shard for v in videos.video_id]]
    n_frames, n_valid, skipped = detect_shard(
        mine, args.out, params, args.on_error, shard=args.shard, shards=args.shards
    )
    rate = n_valid / max(n_frames, 1)
    log.info(
        "shard %d: %d videos, %d frames, face in %.1f %%, %d skipped",
        args.shard,
        len(mine),
        n_frames,
        100 * rate,
        len(skipped),
    )


if __name__ == "__main__":
    run_main(main)
