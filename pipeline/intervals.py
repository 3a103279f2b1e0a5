"""95 % intervals of cross-validated scores, and paired video-level tests of two models.

With a few hundred test videos from a handful of people, one video moves a WAR by most of a
point and one person by several: a score without its interval cannot tell a better model from
a lucky one. Both the interval and the paired test here resample the way the data were drawn:

- **Hierarchical bootstrap** (`interval`): `B` resamples, each drawing the test *subjects*
  with replacement and, within every drawn subject, its *videos* with replacement (clips come
  with their video). The pooled score (WAR, UAR or macro-F1 over every test video of every
  fold) of each resample gives the 2.5th and 97.5th percentiles. Subjects first, because the
  people are what varies most between samples of the same population (Field & Welsh 2007's
  two-stage bootstrap, e.g. Ren et al. 2010). With one subject it resamples videos only.
- **Paired comparison** (`paired`): two results on the same test videos. The same resamples
  applied to both give the interval of the difference of their pooled scores; the exact
  McNemar test counts the videos only one of them gets right (two-sided binomial test of
  `only_a` against `only_b`, p = 1 when they never disagree). Beside the Wilcoxon test over
  folds (whose smallest p with 5 folds is 0.0625), these use every video.

Deterministic: the generator is seeded (`SEED`), subjects and videos are taken in sorted
order, so the same predictions give the same bytes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

B = 2000  # resamples: the percentiles of a 95 % interval move by < 0.5 points between seeds
SEED = 0
LEVEL = 0.95
KEYS = ("war", "uar", "macro_f1")


CHUNK = 250  # resamples drawn at a time: memory (CHUNK × videos), not B × videos


def cells(table: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Per video (sorted by subject, video): its subject, and how many of its rows (clips, or
    the video itself) fall in each cell of the confusion matrix, (V, K·K)."""
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    cell = table.label.map(index).to_numpy(np.int64) * k + table.pred.map(index).to_numpy(np.int64)
    keys = pd.DataFrame(
        {"subject": table.subject.astype(str).to_numpy(), "video_id": table.video_id.astype(str)}
    )
    videos = keys.drop_duplicates().sort_values(["subject", "video_id"]).reset_index(drop=True)
    row = pd.MultiIndex.from_frame(videos).get_indexer(pd.MultiIndex.from_frame(keys))
    counts = np.zeros((len(videos), k * k))
    np.add.at(counts, (row, cell), 1.0)
    return videos, counts


def resamples(subjects: pd.Series, n: int = B, seed: int = SEED):
    """Chunks (m, V) of how often each of V videos (grouped by `subjects`, one entry per video,
    in order) appears in each hierarchical resample; n rows in all.

    A resample draws the subjects with replacement; a subject drawn d times brings d·k draws
    with replacement among its k videos (d independent draws of k, added up)."""
    codes, names = pd.factorize(subjects.to_numpy(), sort=True)
    sizes = np.bincount(codes, minlength=len(names))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for chunk, child in enumerate(np.random.SeedSequence(seed).spawn(math.ceil(n / CHUNK))):
        m = min(CHUNK, n - chunk * CHUNK)
        rng = np.random.default_rng(child)
        drawn = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), m)
        weights = np.zeros((m, len(codes)))
        for j, k in enumerate(sizes):
            weights[:, starts[j] : starts[j + 1]] = rng.multinomial(
                drawn[:, j] * k, np.full(k, 1 / k)
            )
        yield weights


def scores_of(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """WAR, UAR and macro-F1 (each (n,)) of n confusion matrices (n, K, K), classes present."""
    support, predicted = confusion.sum(2), confusion.sum(1)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    present = support > 0
    recall = np.where(present, tp / np.maximum(support, 1e-12), 0.0)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1e-12), 0.0)
    both = recall + precision
    f1 = np.where(both > 0, 2 * precision * recall / np.maximum(both, 1e-12), 0.0)
    classes = np.maximum(present.sum(1), 1)
    return {
        "war": tp.sum(1) / np.maximum(confusion.sum((1, 2)), 1e-12),
        "uar": (recall * present).sum(1) / classes,
        "macro_f1": (f1 * present).sum(1) / classes,
    }


def bootstrap(counts: list[np.ndarray], subjects: pd.Series, k: int, n: int = B, seed: int = SEED):
    """Scores of every resample for each of several results' per-video cell counts (V, K·K)
    over the same videos: one dict of (n,) arrays per result."""
    out = [{key: [] for key in KEYS} for _ in counts]
    for weights in resamples(subjects, n, seed):
        for slot, c in zip(out, counts, strict=True):
            for key, values in scores_of((weights @ c).reshape(-1, k, k)).items():
                slot[key].append(values)
    return [{key: np.concatenate(v) for key, v in slot.items()} for slot in out]


def _bounds(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def interval(table: pd.DataFrame, classes: list[str], n: int = B, seed: int = SEED) -> dict:
    """Pooled WAR, UAR, macro-F1 of a table of test predictions (columns subject, video_id,
    label, pred; one row per video or per clip) with their 95 % hierarchical bootstrap
    intervals: {key: {"pooled", "low", "high"}}, plus "resamples" and "level"."""
    videos, counts = cells(table, classes)
    k = len(classes)
    point = scores_of(counts.sum(0).reshape(1, k, k))
    (boot,) = bootstrap([counts], videos.subject, k, n, seed)
    out: dict = {"resamples": n, "level": LEVEL}
    for key in KEYS:
        low, high = _bounds(boot[key])
        out[key] = {"pooled": float(point[key][0]), "low": low, "high": high}
    return out


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: binomial test of only_a successes in only_a + only_b."""
    from scipy.stats import binomtest

    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired(a: pd.DataFrame, b: pd.DataFrame, classes: list[str], n: int = B, seed: int = SEED):
    """Paired comparison of two results' video predictions (video_id, subject, label, pred)
    on the same test videos: differences a − b of the pooled WAR and UAR with 95 % intervals
    from the same hierarchical resamples, and the exact McNemar test of per-video correctness.

    Returns None when the two do not hold the same videos with the same labels."""
    a = a.sort_values("video_id").reset_index(drop=True)
    b = b.sort_values("video_id").reset_index(drop=True)
    same = len(a) == len(b) and (a.video_id.to_numpy() == b.video_id.to_numpy()).all()
    if not same or not (a.label.to_numpy() == b.label.to_numpy()).all():
        return None
    (videos, ca), (_, cb) = cells(a, classes), cells(b, classes)
    k = len(classes)
    boot_a, boot_b = bootstrap([ca, cb], videos.subject, k, n, seed)
    point_a, point_b = (scores_of(c.sum(0).reshape(1, k, k)) for c in (ca, cb))
    out: dict = {"videos": len(a)}
    for key in ("war", "uar"):
        out[f"{key}_diff"] = float(point_a[key][0] - point_b[key][0])
        low, high = _bounds(boot_a[key] - boot_b[key])
        out[f"{key}_diff_low"], out[f"{key}_diff_high"] = low, high
    right_a, right_b = (a.pred == a.label).to_numpy(), (b.pred == b.label).to_numpy()
    out["only_a"] = int((right_a & ~right_b).sum())
    out["only_b"] = int((right_b & ~right_a).sum())
    out["mcnemar_p"] = mcnemar_p(out["only_a"], out["only_b"])
    return out


def half_width(ci: dict) -> float:
    """Half the width of an interval {low, high} (what "± x" in a table means)."""
    return (ci["high"] - ci["low"]) / 2 if not math.isnan(ci["high"]) else math.nan
