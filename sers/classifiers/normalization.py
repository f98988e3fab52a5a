"""Feature standardisation: the statistics of each language, and standardised batches.

Per-language normalisation standardises source rows by the statistics of the source
training rows and target rows by those of the unlabelled target rows (label-free; see
docs/method.md). The statistics are one (mean, std) pair of shape (layers, D) per *domain*
("source", "target", or any name a caller adds, e.g. "cache" for a third corpus).
"""
from __future__ import annotations

import numpy as np
import torch

from sers.classifiers import data
from sers.classifiers.frames import padded_batch

NORMALIZE = data.NORMALIZE


def feature_stats(sides, layers: list[int], features: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per layer over the rows (pooled) or the frames (frames) of ``sides``."""
    if features == "frames":
        sides = [{layer: side.frames_of(layer) for layer in layers} for side in sides]
    return data.layer_stats(sides, layers, name)


def fit_statistics(normalize: str, source, target, layers: list[int], features: str) -> dict:
    """{"source": (mean, std), "target": (mean, std)} as ``normalize`` says.

    Without target rows the target side can only take the source's statistics.
    """
    if normalize == "none":
        stats = data.identity_stats(len(layers), source[layers[0]].shape[1])
        return {"source": stats, "target": stats}
    if normalize == "global":
        sides = [source] + ([target] if target is not None else [])
        stats = feature_stats(sides, layers, features, "X_source/X_target")
        return {"source": stats, "target": stats}
    source_stats = feature_stats([source], layers, features, "X_source")
    return {"source": source_stats,
            "target": feature_stats([target], layers, features, "X_target") if target is not None else source_stats}


class StandardisedBatches:
    """Batches of rows standardised by a domain's statistics, as tensors on ``device``.

    ``stats`` is the estimator's ``stats_`` dict (shared, so statistics added later are seen).
    """

    def __init__(self, layers: list[int], stats: dict, features: str, device):
        self.layers, self.stats, self.features, self.device = layers, stats, features, device

    def inputs(self, layers_data, rows, domain) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(standardised batch, mask of real frames or None): the arguments of the head's ``embed``."""
        if self.features == "pooled":
            return self.tensor(layers_data, rows, domain), None
        frames, mask = padded_batch(layers_data, self.layers, rows, self.stats[domain])
        return torch.from_numpy(frames).to(self.device), torch.from_numpy(mask).to(self.device)

    def tensor(self, layers_data, rows, domain, layers=None) -> torch.Tensor:
        """Standardised (rows, layers, D) batch; ``layers`` (default: all the model reads) may be a subset."""
        stats = self.stats[domain]
        if layers is not None:  # segment features: only the anchor layers, with their statistics
            positions = [self.layers.index(layer) for layer in layers]
            stats = (stats[0][positions], stats[1][positions])
        return torch.from_numpy(data.gather(layers_data, layers or self.layers, rows, stats)).to(self.device)
