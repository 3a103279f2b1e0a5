"""Apply a trained model to new videos: emotion probabilities per window and per frame.

    python -m pipeline.predict VIDEO --model results/models/gru/hog --out predictions/clip1
    python -m pipeline.predict FOLDER SHEET.csv VIDEO... --model results/models/gru/hog --out DIR

VIDEO is a video file or a folder of frame images. `--model` is either one fold's folder
(`results/models/gru/hog/fold0`, holding `model.pt`) or a model's folder with every fold
(`results/models/gru/hog`): then the fold models form an ensemble whose probabilities are
averaged. Every step before the model repeats what the pipeline did for training, with the
settings stored in `model.pt`: decoding (target_fps), face detection, landmarks and
smoothing, alignment/frontalization, the backbone(s), clip windows (length, stride) and the
person calibration: for `normalize: per_subject`, standardisation with the video's own frames
(the person in the video is a new subject); for `normalize: calibrated`, with the frames of
other unlabelled videos of the same person given with `--calibrate`.

Outputs of one video (written atomically):

    windows.csv    one row per clip window: window, start, stop (frames), start_s, stop_s,
                   face_fraction, pred, p_<class>
    frames.csv     one row per frame: frame, time_s, face (found in that frame), pred and
                   p_<class> = mean of the windows covering the frame
    timeline.png   the per-frame probabilities over time, frames without a face shaded
    summary.json   the video's prediction (mean of the windows), the model(s), the classes

One video file or frame folder: its files go into `--out`, and a video in which no face is
found is an error naming the file (exit status 1), not an empty prediction.

Several inputs, a folder of videos (searched below for video files and frame folders) or a
CSV sheet (column `path`, relative to the sheet or absolute; optional `video_id`, `label`):
a batch. The networks are loaded once; each video's files go into `--out/<video_id>/` (ids
as the dataset stage derives them from the path) and `--out/summary.csv` holds one row per
video (video_id, path, label when the sheet has one, status done | skipped | failed,
prediction, frames, face_frames, windows, seconds, reason, p_<class>), rewritten after each
video. A video that cannot be used (undecodable, no face) is recorded as failed with its
reason (also in its folder's failed.json) and the batch goes on. Run the same command again
and it resumes: videos predicted by the same model (the same model.pt bytes) from the same
file (size, modification time) are skipped, as are earlier failures
unless `--retry-failed`.
"""

from pipeline.predict.batch import expand_inputs, run_batch
from pipeline.predict.predictor import Predictor, run
from pipeline.predict.steps import find_checkpoints, load_models, model_digest, video_stamp

__all__ = [
    "Predictor",
    "expand_inputs",
    "find_checkpoints",
    "load_models",
    "model_digest",
    "run",
    "run_batch",
    "video_stamp",
]
