"""Figures of runs and reports: training curves, similarity curves with the anchors marked,
confusion matrices, and target UAR per method.

Matplotlib figures drawn without pyplot (see sers.display.plots); each function writes one PNG and
returns its path.
No software version goes into the file, so the same data gives the same bytes.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sers.atomic import atomic_path
from sers.display.plots import plain_text, subplots

_METADATA = {"Software": None}
_ANCHOR_COLOUR = "tab:red"


@plain_text
def anchored_curves(layers, values: dict[str, list], path, *, directions: dict[str, str] | None = None,
                    anchor_layers=(), anchor_groups=(), anchor_measure: str | None = None,
                    title: str | None = None) -> Path:
    """One panel per measure, value against layer; anchor layers as dashed vertical lines,
    anchor groups (LAM-GL) as shaded spans, the measure that chose them in a bold title."""
    directions = directions or {}
    names = list(values)
    columns = min(3, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = subplots(rows, columns, figsize=(4.0 * columns, 2.9 * rows), squeeze=False)
    layers = np.asarray(layers)
    for ax, name in zip(axes.flat, names):
        y = np.asarray([np.nan if v is None else v for v in values[name]], dtype=float)
        for group in anchor_groups:
            ax.axvspan(min(group) - 0.5, max(group) + 0.5, color=_ANCHOR_COLOUR, alpha=0.12, linewidth=0)
        for layer in anchor_layers:
            ax.axvline(layer, color=_ANCHOR_COLOUR, linestyle="--", linewidth=0.9, alpha=0.8)
        ax.plot(layers, y, marker="o", markersize=3, linewidth=1.3, color="tab:blue")
        direction = directions.get(name)
        label = f"{name} ({direction} is better)" if direction else name
        chose = name == anchor_measure
        ax.set_title(label + ("  - chose the anchors" if chose else ""), fontsize=9,
                     fontweight="bold" if chose else "normal")
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    height = 2.9 * rows  # inches; the margins below are in inches too
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.55 / height,
                        top=1 - (0.65 if title else 0.35) / height, hspace=0.6, wspace=0.28)
    return _save(fig, path)


@plain_text
def confusion_heatmap(counts, classes, path, *, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class) with the percentage in each cell."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, counts / totals, np.nan)
    size = 1.1 + 0.45 * len(classes)
    fig, ax = subplots(figsize=(size, size + 0.15))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], fontsize=8)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if np.isfinite(share[i, j]):
                ax.text(j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.55 else "black")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


@plain_text
def uar_bars(labels: list[str], means, stds, path, *, chance: float | None = None,
             marked: list[bool] | None = None) -> Path:
    """Target UAR per method with ± std error bars; hatched bars are target-selected runs."""
    means = np.asarray(means, dtype=float)
    stds = np.nan_to_num(np.asarray(stds, dtype=float))
    fig, ax = subplots(figsize=(max(3.5, 0.9 * len(labels) + 1.5), 2.8))
    x = np.arange(len(labels))
    bars = ax.bar(x, 100 * means, yerr=100 * stds, capsize=3, color="tab:blue", alpha=0.85)
    for bar, is_marked in zip(bars, marked or []):
        if is_marked:
            bar.set_hatch("//")
            bar.set_facecolor("tab:gray")
    if chance is not None:
        ax.axhline(100 * chance, color="black", linestyle=":", linewidth=1)
        # beside the plot, where no bar can hide it
        ax.text(1.01, 100 * chance, "chance", transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.set_xticks(x, labels, fontsize=8, rotation=20 if len(labels) > 5 else 0)
    ax.set_ylabel("target UAR (%)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    top = np.nanmax(100 * (means + stds)) if np.isfinite(means).any() else 100
    ax.set_ylim(0, min(100, top * 1.15 + 2))
    fig.tight_layout()
    return _save(fig, path)


def training_curves(history: list[dict], path) -> Path:
    """curves.png of a run: the losses, the alignment terms on their own log axis, the dev UAR per epoch."""
    names = list(history[0])
    epochs = [r["epoch"] for r in history]
    # The alignment terms live on another scale than the cross-entropy: their own log axis.
    fig, (losses, alignment, dev) = subplots(1, 3, figsize=(11, 3))
    for name in ("loss_ce", "loss_total"):
        losses.plot(epochs, [r[name] for r in history], label=name)
    losses.set_xlabel("epoch")
    losses.legend(fontsize=7)
    for name in [n for n in names if n.startswith("loss_") and n not in ("loss_ce", "loss_total")]:
        values = [r[name] for r in history]
        if any(v > 0 for v in values):
            alignment.plot(epochs, values, label=name)
    if alignment.lines:
        alignment.set_yscale("log")
        alignment.legend(fontsize=7)
    else:
        alignment.text(0.5, 0.5, "no alignment term", ha="center", va="center", transform=alignment.transAxes)
    alignment.set_xlabel("epoch")
    alignment.set_ylabel("alignment term (unweighted)")
    if "dev_uar" in names:
        dev.plot(epochs, [r["dev_uar"] for r in history], marker="o", markersize=3)
    dev.set_xlabel("epoch")
    dev.set_ylabel("dev UAR")
    fig.tight_layout()
    # no atomic rename: the run folder itself is partial until the run finishes
    fig.savefig(path, dpi=80, metadata={"Software": None})
    return Path(path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        fig.savefig(partial, format="png", dpi=110, metadata=_METADATA)
    return path
