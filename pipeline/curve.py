"""The `curve` stage: how accuracy grows with the number of people a model is trained on.

For every test fold, the model is trained again on subsets of that fold's training subjects,
`n` people at a time for each `n` of `curve.subjects`, and tested on the fold's test videos,
which never change: every subset of the training subjects when there are at most
`curve.samples` of them, else `curve.samples` distinct subsets drawn at random (seeded by
`curve.seed`, the fold and `n`). Training is the `train` stage's (the same engine, settings,
inner validation and person calibration); a clip's probabilities are averaged per video.

Outputs:

    curves/{model}_{backbone}.csv   one row per test video, n and subset: fold, n_subjects,
                                    sample, train_subjects (";"-joined), video_id, subject,
                                    label, pred
    curves/{model}_{backbone}.json  per n: the subsets trained, and the video WAR and UAR
                                    pooled over every test video of every fold and subset,
                                    with 95 % intervals (`pipeline.intervals`: test subjects,
                                    then their videos; a video's predictions under the
                                    different subsets come with it, as clips do)

A model on a backbone trained per fold (`fer-finetuned`) has no curve: its network was fitted
on all of the fold's training subjects, so a subset's model would stand on more people than
the subset; the rule refuses such a pairing.

    python -m pipeline.curve --clips results/clips.csv --folds results/folds.csv \\
        --features F.h5.. --model statspool --backbone geometry --params '{}' \\
        --curve '{"subjects": [1, 2, 3, 4], "samples": 6}' --out-csv C.csv --out-json C.json
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pipeline import catalog
from pipeline.augment import augmenter
from pipeline.common import (
    ConfigError,
    parse_params,
    resolve_device,
    run_main,
    set_threads,
    setup_logging,
    write_csv_atomic,
    write_json_atomic,
)
from pipeline.engine import predict, train_selected
from pipeline.evaluate import PROTOCOL
from pipeline.intervals import interval
from pipeline.models import build_model
from pipeline.splits import split
from pipeline.train import stage_inputs

log = logging.getLogger(__name__)

COLUMNS = ["fold", "n_subjects", "sample", "train_subjects", "video_id", "subject", "label", "pred"]


def subsets(subjects: Sequence[str], n: int, samples: int, seed: int) -> list[tuple[str, ...]]:
    """The subsets of n of `subjects` to train on: all of them when there are at most
    `samples`, else `samples` distinct ones drawn at random with `seed` (sorted, so the same
    seed gives the same subsets in the same order)."""
    people = sorted(map(str, subjects))
    if not 1 <= n <= len(people):
        return []
    if math.comb(len(people), n) <= samples:
        return list(itertools.combinations(people, n))
    rng = np.random.default_rng(seed)
    chosen: set[tuple[str, ...]] = set()
    while len(chosen) < samples:
        chosen.add(tuple(sorted(rng.choice(people, n, replace=False).tolist())))
    return sorted(chosen)


def summary(table: pd.DataFrame, classes: list[str]) -> dict:
    """Per n: subsets trained, and pooled video WAR / UAR with their 95 % intervals."""
    out = []
    for n, rows in table.groupby("n_subjects", sort=True):
        ci = interval(rows, classes)
        out.append(
            {
                "n_subjects": int(n),
                "subsets": int(rows[["fold", "sample"]].drop_duplicates().shape[0]),
                "folds": int(rows.fold.nunique()),
                "war": ci["war"],
                "uar": ci["uar"],
            }
        )
    return {"points": out, "resamples": ci["resamples"] if out else 0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Accuracy against the number of training subjects.")
    ap.add_argument("--clips", required=True)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--features", nargs="+", required=True, help="features/{backbone}/shard-*.h5")
    ap.add_argument("--model", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--params", default="{}", help="the model's config section as JSON")
    ap.add_argument("--curve", default="{}", help="the config's curve section as JSON")
    ap.add_argument("--clip-length", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--normalize", choices=tuple(PROTOCOL), default="none")
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--out-json", required=True)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    per_fold = [p for p in catalog.parts(args.backbone) if catalog.backbone_entry(p).per_fold]
    if per_fold:
        raise ConfigError(
            f"{args.model} / {args.backbone}: no curve on a backbone trained per fold "
            f"({', '.join(per_fold)}): its network stands on all of a fold's training subjects"
        )
    settings = parse_params(args.curve)
    sizes = sorted({int(n) for n in settings.get("subjects") or []})
    samples, curve_seed = int(settings.get("samples", 4)), int(settings.get("seed", 0))
    device = resolve_device(args.device)
    params, training, folds, classes, clips, reader = stage_inputs(args)
    to_index = {c: i for i, c in enumerate(classes)}
    augment = augmenter(catalog.lookup(catalog.MODELS, args.model, "model").kind, training.augment)
    rows = []
    for fold in sorted(int(f) for f in folds.fold.unique() if int(f) >= 0):
        train, test = split(clips, folds, fold)
        x_all = torch.from_numpy(reader.clips(train, args.clip_length))
        x_test = torch.from_numpy(reader.clips(test, args.clip_length))
        people = sorted(map(str, train.subject.unique()))
        for n in sizes:
            drawn = subsets(people, n, samples, curve_seed + 1000 * fold + n)
            for sample, chosen in enumerate(drawn):
                mine = train.subject.astype(str).isin(chosen).to_numpy()
                who = ";".join(chosen)
                part = train[mine].reset_index(drop=True)
                y = torch.tensor([to_index[c] for c in part.label])

                def build(shape=tuple(x_all.shape[1:])):
                    return build_model(args.model, len(classes), shape, params)

                x = x_all[torch.from_numpy(mine.copy())]
                seed = args.seed + fold
                label = f"{args.model}, fold {fold}, {n} training people ({who})"
                fitted = train_selected(
                    build, x, y, part, training, seed, device, augment, label=label
                )
                probs = pd.DataFrame(predict(fitted.model, x_test, device), columns=classes)
                probs["video_id"] = test.video_id.to_numpy()
                video = probs.groupby("video_id", sort=True)[classes].mean()
                about = test.drop_duplicates("video_id").set_index("video_id").loc[video.index]
                for vid, p in zip(video.index, video.to_numpy(), strict=True):
                    pred = classes[int(p.argmax())]
                    subject, label = str(about.subject[vid]), about.label[vid]
                    rows.append([fold, n, sample, who, vid, subject, label, pred])
                log.info("fold %d, %d subject(s) %s: trained", fold, n, ", ".join(chosen))
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_csv_atomic(args.out_csv, table)
    result = {
        "model": args.model,
        "backbone": args.backbone,
        "protocol": PROTOCOL[args.normalize],
        "classes": classes,
        "sizes": sizes,
        "samples": samples,
        **summary(table, classes),
    }
    write_json_atomic(args.out_json, result)
    for point in result["points"]:
        war = point["war"]
        log.info(
            "%d subject(s): video WAR %.3f [%.3f, %.3f] over %d subsets",
            point["n_subjects"],
            war["pooled"],
            war["low"],
            war["high"],
            point["subsets"],
        )


if __name__ == "__main__":
    run_main(main)
