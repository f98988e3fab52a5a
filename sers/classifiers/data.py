"""Layer-wise feature inputs: validation, standardisation statistics, batch gathering.

The estimator accepts pooled features of several layers in one of two forms:

- a dict ``{layer_number: (n, D) array}`` holding only the layers you have read
  (the highest key is taken as the model's last layer), or
- a 3-D array ``(n, L, D)`` holding *every* hidden state, index = layer number.

Rows are never copied as a whole: batches are gathered from the per-layer
arrays, so memory-mapped or cache-backed arrays work without a second copy.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sers.errors import SersError
from sers.classifiers.options import NORMALIZE



class InputError(SersError, ValueError):
    """Arrays or parameters the caller must fix (a ValueError for scikit-learn users)."""


class ParameterError(InputError, InvalidParameterError):
    """A parameter outside its declared constraint (scikit-learn's InvalidParameterError too)."""


class NotFitted(InputError, NotFittedError):
    """predict/embed/... before fit() or load() (scikit-learn's NotFittedError too)."""


def as_layer_dict(X, name: str) -> dict[int, np.ndarray]:
    """Validate ``X`` (dict layer -> (n, D), or (n, L, D) array) into a dict of (n, D) arrays."""
    if isinstance(X, dict):
        if not X:
            raise InputError(f"{name} is an empty dict; give {{layer: (n, D) array}}")
        layers = {int(layer): np.asarray(values) for layer, values in X.items()}
    else:
        X = np.asarray(X)
        if X.ndim != 3:
            raise InputError(f"{name} has shape {X.shape}; expected (n_utterances, n_layers, dim) "
                             f"or a dict {{layer: (n_utterances, dim) array}}")
        layers = {layer: X[:, layer] for layer in range(X.shape[1])}
    shapes = {layer: values.shape for layer, values in layers.items()}
    first = next(iter(shapes.values()))
    if any(len(s) != 2 for s in shapes.values()) or any(s != first for s in shapes.values()):
        raise InputError(f"{name}: every layer must be an (n, D) array of the same shape; got {shapes}")
    if first[0] == 0:
        raise InputError(f"{name} has no rows")
    return dict(sorted(layers.items()))


def n_rows(layers) -> int:
    """Utterances in a layer dict (or in frame features, which say so themselves)."""
    if hasattr(layers, "n_utterances"):
        return layers.n_utterances
    return len(next(iter(layers.values())))


def layer_stats(sides: list[dict[int, np.ndarray]], layers: list[int], name: str,
                block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of shape (len(layers), D) over the rows of all ``sides`` together.

    Sums run in float64 over blocks of rows, so memory stays flat for large corpora.
    """
    means, stds = [], []
    for layer in layers:
        arrays = [side[layer] for side in sides]
        total = sum(len(a) for a in arrays)
        mean = sum(a[i:i + block].sum(axis=0, dtype=np.float64)
                   for a in arrays for i in range(0, len(a), block)) / total
        var = sum(np.square(a[i:i + block] - mean).sum(axis=0)
                  for a in arrays for i in range(0, len(a), block)) / total
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
            raise InputError(f"{name}: layer {layer} contains NaN or infinite values")
        std = np.sqrt(var)
        means.append(mean)
        stds.append(np.where(std > 1e-8, std, 1.0))  # a constant dimension stays as it is
    return np.asarray(means, np.float32), np.asarray(stds, np.float32)


def identity_stats(num_layers: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((num_layers, dim), np.float32), np.ones((num_layers, dim), np.float32)


def gather(layers_data: dict[int, np.ndarray], layers: list[int], rows: np.ndarray,
           stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(len(rows), len(layers), D) float32 standardised batch."""
    batch = np.stack([np.asarray(layers_data[layer][rows], dtype=np.float32) for layer in layers], axis=1)
    mean, std = stats
    batch -= mean
    batch /= std
    return batch


class Cycle:
    """An endless shuffled stream of row indices: the unlabelled target rows of each batch, the
    segments of one vowel class. Each pass over the ``n`` rows is a new permutation."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator, self.order, self.position = n, generator, np.empty(0, np.int64), 0

    def take(self, count: int) -> np.ndarray:
        parts = []
        while count > 0:
            if self.position >= len(self.order):
                self.order, self.position = torch.randperm(self.n, generator=self.generator).numpy(), 0
            part = self.order[self.position:self.position + count]
            self.position += len(part)
            count -= len(part)
            parts.append(part)
        return np.concatenate(parts)
