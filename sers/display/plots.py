"""PNG figures of per-layer results: curves per measure and layer x layer heatmaps.

Matplotlib figures drawn without pyplot (no display needed, and importing sers never changes
the backend of the process: a notebook's inline plots keep working); every function takes plain
lists/arrays and a path, writes one PNG and returns its path. The same bytes come
out for the same inputs, so outputs can be compared byte for byte.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sers.atomic import atomic_path

_METADATA = {"Software": None}  # no matplotlib version in the file: same data, same bytes


def subplots(*args, figsize, **kwargs):
    """(figure, axes) as ``plt.subplots`` gives them, but a bare Figure that pyplot never sees: no
    backend is chosen or switched (``matplotlib.use("Agg")`` at import turned off a notebook's inline
    plots), nothing is kept open, and ``savefig`` renders the PNG with Agg all the same."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def plain_text(draw):
    """Draw with matplotlib's mathtext off: labels come from user data, and a label such as
    ``$\\frac{a}$`` must print as typed instead of failing to parse as a formula."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)
    return drawn


@plain_text
def layer_curves(layers, values: dict[str, list], path, *, directions: dict[str, str] | None = None,
                 highlight: list[int] | None = None, title: str | None = None) -> Path:
    """One small panel per measure: value against layer, best layer marked.

    ``directions[name]`` is "lower" or "higher" (which end is better); ``highlight``
    shades chosen layers (e.g. anchors) in every panel.
    """
    directions = directions or {}
    fig, axes, rows = _panels(len(values))
    layers = np.asarray(layers)
    for ax, name in zip(axes.flat, values):
        y = _as_floats(values[name])
        ax.plot(layers, y, marker="o", markersize=3, linewidth=1.2)
        for layer in highlight or []:
            ax.axvspan(layer - 0.4, layer + 0.4, color="tab:orange", alpha=0.2, linewidth=0)
        _mark_best(ax, layers, y, directions.get(name), "tab:red")
        _label_panel(ax, name, directions.get(name))
    return _finish_panels(fig, axes, len(values), rows, path, title)


@plain_text
def vowel_curves(layers, per_vowel: dict[str, dict[str, list]], path, *,
                 directions: dict[str, str] | None = None, title: str | None = None) -> Path:
    """One panel per measure, one line per vowel class (``per_vowel[vowel][measure]``: a
    value per layer), each vowel's best layer starred in its colour and listed under the panel's
    title (stars of vowels sharing a layer overlap); a legend names the vowels. A vowel lacking a
    measure has no line in that panel."""
    directions = directions or {}
    names = list(dict.fromkeys(name for columns in per_vowel.values() for name in columns))
    fig, axes, rows = _panels(len(names), legend_width=0.8)
    layers = np.asarray(layers)
    colours = {vowel: matplotlib.colormaps["tab10"](i % 10) for i, vowel in enumerate(per_vowel)}
    handles = {}
    for ax, name in zip(axes.flat, names):
        best = []
        for vowel, columns in per_vowel.items():
            if name in columns:
                y = _as_floats(columns[name])
                handles[vowel], = ax.plot(layers, y, marker="o", markersize=2.5, linewidth=1.1,
                                          color=colours[vowel], label=vowel)
                layer = _mark_best(ax, layers, y, directions.get(name), colours[vowel], edge="black")
                best.append(f"{vowel} {'-' if layer is None else layer}")
        _label_panel(ax, name, directions.get(name), "best: " + ", ".join(best) if directions.get(name) else "")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if handles:
        fig.legend(list(handles.values()), list(handles), title="vowel", loc="center right", fontsize=8,
                   title_fontsize=8, frameon=False)
    return _finish_panels(fig, axes, len(names), rows, path, title, legend_width=0.8, title_lines=2)


@plain_text
def layer_heatmap(matrix, path, *, title: str = "", xlabel: str = "target layer",
                  ylabel: str = "source layer", cmap: str = "viridis") -> Path:
    """A layer x layer matrix as a heatmap (row = first axis), with a colour bar."""
    matrix = np.asarray(matrix, dtype=float)
    size = 2.5 + 0.18 * max(matrix.shape)
    fig, ax = subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, origin="lower", cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _panels(count: int, legend_width: float = 0.0):
    """A grid of up to three panels per row; ``legend_width`` inches kept free on the right."""
    columns = min(3, max(count, 1))
    rows = max(1, math.ceil(count / columns))
    fig, axes = subplots(rows, columns, figsize=(4.2 * columns + legend_width, 3.0 * rows), squeeze=False)
    return fig, axes, rows


def _finish_panels(fig, axes, used: int, rows: int, path, title, legend_width: float = 0.0,
                   title_lines: int = 1) -> Path:
    """Hide unused panels, add the figure title, set margins (room for ``title_lines``-line
    panel titles and a legend ``legend_width`` inches wide on the right) and save."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    # fixed margins: tight_layout doubles the drawing time of a many-panel figure
    width, height = fig.get_size_inches()  # margins below are in inches
    extra = 0.16 * (title_lines - 1)  # inches per further line of a panel title
    fig.subplots_adjust(left=0.06, right=0.98 - legend_width / width, bottom=0.5 / height,
                        top=1 - ((0.6 if title else 0.35) + extra) / height, hspace=0.55 + extra * 1.3,
                        wspace=0.25)
    return _save(fig, path, tight=False)


def _as_floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _mark_best(ax, layers, y, direction, colour, edge=None):
    """Star the best point; returns its layer (None when nothing is finite or no direction)."""
    if not direction or not np.isfinite(y).any():
        return None
    best = int(np.nanargmin(y) if direction == "lower" else np.nanargmax(y))
    outline = {"markeredgecolor": edge, "markeredgewidth": 0.6} if edge else {}
    ax.plot(layers[best], y[best], marker="*", markersize=11, color=colour, **outline)
    return layers[best]


def _label_panel(ax, name: str, direction, second_line: str = "") -> None:
    title = f"{name} ({direction} is better)" if direction else name
    ax.set_title(f"{title}\n{second_line}" if second_line else title, fontsize=9)
    ax.set_xlabel("layer", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _save(fig, path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    with atomic_path(path) as partial:
        fig.savefig(partial, format="png", dpi=110, metadata=_METADATA)
    return path
