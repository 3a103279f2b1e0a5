"""Apply a trained model to new videos: emotion probabilities per window and per frame.

    python -m pipeline.predict VIDEO... FOLDER... SHEET.csv... --model results/models/gru/hog --out DIR

VIDEO is a video file or a folder of frame images. `--model` is either one fold's folder
(`results/models/gru/hog/fold0`, holding `model.pt`) or a model's folder with every fold
(`results/models/gru/hog`): then the fold models form an ensemble whose probabilities are
averaged. Every step before the model repeats what the pipeline did for training, with the
settings stored in `model.pt`: decoding (target_fps), face detection, landmarks and
smoothing, alignment/frontalization, the backbone(s), clip windows (length, stride) and the
person calibration: for `normalize: per_subject`, standardisation with the video's own frames
(the person in the video is a new subject); for `normalize: calibrated`, with the frames of
other unlabelled videos of the same person given with `--calibrate`.

One layout, whatever the inputs (one video, several, folders of videos searched below for
video files and frame folders, CSV sheets with a `path` column, relative to the sheet or
absolute; optional `video_id`, `label`, `subject`, `reference`): the networks are loaded once,
each video's files go into `DIR/<video_id>/` (ids as the dataset stage derives them from the
path), written atomically:

    windows.csv    one row per clip window: window, start, stop (frames), start_s, stop_s,
                   face_fraction, pred, p_<class>
    frames.csv     one row per frame: frame, time_s, face (found in that frame), pred and
                   p_<class> = mean of the windows covering the frame
    timeline.png   the per-frame probabilities over time, frames without a face shaded
    summary.json   the video's prediction (mean of the windows), the model(s), the classes

and `DIR/summary.csv` holds one row per video (video_id, path, label and subject when the
sheet has them, status done | skipped | failed, prediction, frames, face_frames, windows,
seconds, reason, p_<class>), rewritten after each video. A video that cannot be used
(undecodable, no face) is recorded as failed with its reason (also in its folder's
failed.json) and the others go on; the command then exits with status 1, naming the
failures. Run the same command again and it resumes: videos predicted by the same model (the
same model.pt bytes) from the same file (size, modification time) are skipped, as are
earlier failures unless `--retry-failed`. A sheet with labels is scored against them
(`scoring`: metrics.json, confusion.csv; `--map-label` for other class names).
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
