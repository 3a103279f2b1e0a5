"""The report: hostile dataset strings are escaped, protocols are kept apart."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.compare import all_pairs
from pipeline.evaluate import evaluate, provenance
from pipeline.qc import RUNTIME_COLUMNS
from pipeline.report import render

HOSTILE = "<script>alert('x')</script>"
LABELS = [HOSTILE, 'say "cheese" & <b>', "neutral"]


def predictions(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(3):
        for v in range(6):
            label = LABELS[v % 3]
            p = rng.dirichlet(np.ones(3))
            rows.append(
                {
                    "video_id": f"v{fold}_{v}_$(rm -rf ~)_<img src=x onerror=alert(1)>",
                    "subject": f"s{fold}",
                    "label": label,
                    "fold": fold,
                    "start": 0,
                    "stop": 16,
                    **{f"p_{c}": p[i] for i, c in enumerate(sorted(LABELS))},
                }
            )
    table = pd.DataFrame(rows)
    cols = [f"p_{c}" for c in sorted(LABELS)]
    table["pred"] = [sorted(LABELS)[i] for i in table[cols].to_numpy().argmax(1)]
    return table


def metrics_for(model: str, normalize: str, seed: int) -> dict:
    m = evaluate([predictions(seed)], model, "hog")
    m.update(provenance({"cv": {"normalize": normalize}, "model": {}}))
    return m


def render_hostile(metrics: list[dict]) -> str:
    pred = predictions(0)
    videos = pred.drop_duplicates("video_id")[["video_id", "subject", "label"]].assign(n_frames=30)
    folds = videos[["video_id", "subject", "label"]].assign(
        fold=pred.drop_duplicates("video_id").fold
    )
    skipped = pd.DataFrame(
        {"video_id": [HOSTILE], "stage": ["detect_faces"], "reason": ["no face in <video>"]}
    )
    config = {"cv": {"method": "kfold"}, "dataset": {"sheet": HOSTILE}}
    faces = {
        "counts": dict.fromkeys(
            ("frames", "valid", "detected", "interpolated", "filled", "multi", "others", "cropped"),
            0,
        ),
        "pose": dict.fromkeys(("yaw", "pitch", "roll", "quality")),
        "quality": {},
    }
    return render(
        metrics,
        videos=videos,
        folds=folds,
        skipped=skipped,
        pairs=all_pairs(metrics),
        faces=faces,
        runtime=pd.DataFrame(columns=RUNTIME_COLUMNS),
        index=pd.DataFrame(),
        config=config,
    )


def test_every_dataset_string_is_escaped():
    html = render_hostile([metrics_for("gru", "none", 0), metrics_for("meanpool", "none", 1)])
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "say &quot;cheese&quot; &amp; &lt;b&gt;" in html
    assert "no face in &lt;video&gt;" in html
    # every tag in the page is one the report writes itself
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "h3",
        "p",
        "span",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "figure",
        "figcaption",
        "img",
        "div",
        "details",
        "summary",
        "pre",
        "code",
    }, tags


def test_transductive_results_are_labelled_and_never_share_a_table():
    html = render_hostile(
        [
            metrics_for("gru", "none", 0),
            metrics_for("meanpool", "none", 1),
            metrics_for("gru", "per_subject", 2),
            metrics_for("meanpool", "per_subject", 3),
        ]
    )
    assert "Inductive protocol" in html and "Transductive protocol" in html
    results = html[html.index("<h2>Results</h2>") : html.index("<h2>Against the baseline</h2>")]
    inductive, transductive = results.split("Transductive protocol</h3>")
    assert "test subjects&#x27; unlabelled" not in inductive
    assert "unlabelled test clips" in transductive
    # each results table lists each model once
    first_table = inductive[inductive.index("<table>") : inductive.index("</table>")]
    assert first_table.count(">gru<") == 1 and first_table.count(">meanpool<") == 1
    # baselines are compared within a protocol only: two 'Against the baseline' sections
    assert html.count("<h2>Against the baseline</h2>") == 1
    assert html.count("<h2>Against the baseline (transductive)</h2>") == 1


def test_one_transductive_result_among_five_is_named_not_the_whole_run():
    """The page of a run with one per_subject model among five opened with a banner saying the
    run's features were standardised per subject, as if every number were transductive."""
    models = ("gru", "meanpool", "c3d", "tcn", "statspool")
    html = render_hostile(
        [metrics_for(m, "per_subject" if m == "tcn" else "none", i) for i, m in enumerate(models)]
    )
    top = html[: html.index("<h2>Results</h2>")]
    assert "1 of these 5 results are transductive (tcn on hog;" in top
    assert "Transductive protocol: features were standardised" not in top
    html = render_hostile([metrics_for(m, "per_subject", i) for i, m in enumerate(models[:2])])
    top = html[: html.index("<h2>Results</h2>")]
    assert "Transductive protocol: features were standardised per subject" in top
