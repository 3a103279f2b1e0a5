"""The report's figures (matplotlib, Agg), each returned as an inline <img>."""

from __future__ import annotations

import numpy as np

from pipeline.report.html import png

BASELINE = "meanpool"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(cm: list[list[int]], classes: list[str], title: str) -> str:
    plt = pyplot()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.3, 3.0))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.6 else "black",
            )
    return png(fig, alt=title)


def onthefly_figure(metrics: list[dict]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for m in metrics:
        curve = m.get("onthefly")
        if not curve:
            continue
        x = 100 * np.asarray(curve["fractions"])
        y = 100 * np.asarray(curve["war"]["mean"])
        style = "--" if m["model"] == BASELINE else "-"
        ax.plot(x, y, style, marker="o", markersize=3, label=f"{m['model']} / {m['backbone']}")
    ax.axhline(100 * metrics[0]["chance"]["war"], color="grey", lw=1, ls=":", label="chance")
    ax.set_xlabel("% of the video seen")
    ax.set_ylabel("video WAR (%)")
    ax.set_xlim(5, 105)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig, alt="on-the-fly accuracy: video WAR against the fraction of the video seen")


def training_figure(m: dict) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for k, fold in enumerate(m["training"]):
        c = fold["curve"]
        color = f"C{k % 10}"
        ax.plot(c["epoch"], c["loss"], color=color, lw=1, label=f"fold {fold['fold']}")
        if any(v is not None for v in c.get("val_loss", [])):
            val = [np.nan if v is None else v for v in c["val_loss"]]
            ax.plot(c["epoch"], val, color=color, lw=1, ls="--")
            if fold["best_epoch"] is not None:
                ax.plot(
                    fold["best_epoch"],
                    val[c["epoch"].index(fold["best_epoch"])],
                    "o",
                    color=color,
                    ms=4,
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{m['model']} / {m['backbone']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return png(fig, alt=f"training curves of {m['model']} / {m['backbone']}")


def folds_figure(metrics: list[dict]) -> str:
    """Video WAR of every fold (dots, one colour per fold) and the mean (bar) per result."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.75 * len(metrics) + 1.5), 3.6))
    folds = sorted({f["fold"] for m in metrics for f in m["video"]["folds"]})
    colour = {k: f"C{i % 10}" for i, k in enumerate(folds)}
    for x, m in enumerate(metrics):
        wars = [(f["fold"], 100 * f["war"]) for f in m["video"]["folds"]]
        offsets = np.linspace(-0.25, 0.25, len(wars)) if len(wars) > 1 else [0.0]
        for dx, (fold, war) in zip(offsets, wars, strict=True):
            ax.plot(x + dx, war, "o", ms=4, color=colour[fold], alpha=0.85)
        ax.hlines(100 * m["video"]["mean"]["war"], x - 0.35, x + 0.35, color="black", lw=2)
    ax.axhline(100 * metrics[0]["chance"]["war"], color="grey", lw=1, ls=":")
    ax.set_xticks(
        range(len(metrics)),
        [f"{m['model']}\n{m['backbone']}" for m in metrics],
        rotation=45,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("video WAR per fold (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    if len(folds) <= 12:
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=colour[k], label=f"fold {k}") for k in folds
        ]
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig, alt="video WAR of every fold per model and backbone")


def people_figure(curves: list[dict], chance: float) -> str:
    """Video WAR (pooled, with its 95 % interval) against the number of training subjects."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, c in enumerate(curves):
        n = np.array([p["n_subjects"] for p in c["points"]], float)
        war = 100 * np.array(
            [[p["war"][key] for key in ("pooled", "low", "high")] for p in c["points"]]
        )
        dx = (k - (len(curves) - 1) / 2) * 0.06
        style = "--" if c["model"] == BASELINE else "-"
        label = f"{c['model']} / {c['backbone']} ({c['protocol']})"
        spread = [war[:, 0] - war[:, 1], war[:, 2] - war[:, 0]]
        ax.errorbar(
            n + dx, war[:, 0], yerr=spread, fmt=style, marker="o", ms=4, capsize=3, label=label
        )
    ax.axhline(100 * chance, color="grey", lw=1, ls=":", label="chance")
    sizes = sorted({p["n_subjects"] for c in curves for p in c["points"]})
    ax.set_xticks(sizes)
    ax.set_xlabel("training subjects")
    ax.set_ylabel("video WAR (%), 95 % interval")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig, alt="video WAR against the number of training subjects")
