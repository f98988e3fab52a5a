"""PNG figures of per-layer results: curves per measure and layer x layer heatmaps.

Matplotlib with the Agg backend (no display needed); every function takes plain
lists/arrays and a path, writes one PNG and returns its path. The same bytes come
out for the same inputs, so outputs can be compared byte for byte.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

_METADATA = {"Software": None}  # no matplotlib version in the file: same data, same bytes


def layer_curves(layers, values: dict[str, list], path, *, directions: dict[str, str] | None = None,
                 highlight: list[int] | None = None, title: str | None = None) -> Path:
    """One small panel per measure: value against layer, best layer marked.

    ``directions[name]`` is "lower" or "higher" (which end is better); ``highlight``
    shades chosen layers (e.g. anchors) in every panel.
    """
    directions = directions or {}
    names = list(values)
    columns = min(3, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    layers = np.asarray(layers)
    for ax, name in zip(axes.flat, names):
        y = np.asarray([np.nan if v is None else v for v in values[name]], dtype=float)
        ax.plot(layers, y, marker="o", markersize=3, linewidth=1.2)
        for layer in highlight or []:
            ax.axvspan(layer - 0.4, layer + 0.4, color="tab:orange", alpha=0.2, linewidth=0)
        direction = directions.get(name)
        if direction and np.isfinite(y).any():
            best = int(np.nanargmin(y) if direction == "lower" else np.nanargmax(y))
            ax.plot(layers[best], y[best], marker="*", markersize=11, color="tab:red")
        ax.set_title(f"{name} ({direction} is better)" if direction else name, fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    # fixed margins: tight_layout doubles the drawing time of a many-panel figure
    height = 3.0 * rows  # inches; margins below are in inches too
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.5 / height, top=1 - (0.6 if title else 0.35) / height,
                        hspace=0.55, wspace=0.25)
    return _save(fig, path, tight=False)


def layer_heatmap(matrix, path, *, title: str = "", xlabel: str = "target layer",
                  ylabel: str = "source layer", cmap: str = "viridis") -> Path:
    """A layer x layer matrix as a heatmap (row = first axis), with a colour bar."""
    matrix = np.asarray(matrix, dtype=float)
    size = 2.5 + 0.18 * max(matrix.shape)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, origin="lower", cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_METADATA)
    plt.close(fig)
    return path
