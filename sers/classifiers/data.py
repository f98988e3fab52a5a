"""Layer-wise feature inputs: validation, standardisation statistics, batch gathering.

The estimator accepts pooled features of several layers in one of three forms:

- a dict ``{layer_number: (n, D) array}`` holding only the layers you have read
  (the highest key is taken as the model's last layer),
- a 3-D array ``(n, L, D)`` holding *every* hidden state, index = layer number, or
- a 2-D array ``(n, D)``: one layer, taken as layer 0 (what scikit-learn's tools pass, e.g.
  after a StandardScaler in a Pipeline; methods that read several layers need one of the others).

Rows are never copied as a whole: batches are gathered from the per-layer
arrays, so memory-mapped or cache-backed arrays work without a second copy.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from sers.errors import SersError
from sers.classifiers.options import NORMALIZE

if TYPE_CHECKING:
    import torch

# numpy only at import: `sers similarity` standardises speakers through this module (via
# sers.classifiers.speakers) and should not pay for importing torch or scikit-learn.


class InputError(SersError, ValueError):
    """Arrays or parameters the caller must fix (a ValueError for scikit-learn users)."""


class InputTypeError(InputError, TypeError):
    """An input of a kind the estimator cannot read (a TypeError too, as scikit-learn raises)."""


class ParameterError(InputTypeError):
    """A parameter outside its declared constraint: a ValueError and a TypeError, as scikit-learn's
    InvalidParameterError is (that class lives in a private module, so sers does not subclass it)."""


def as_layer_dict(X, name: str) -> dict[int, np.ndarray]:
    """Validate the layout of ``X`` (dict layer -> (n, D), (n, L, D) or (n, D) array) into a dict of
    (n, D) arrays; :func:`checked_layers` then checks the values of the layers a model reads."""
    sparse = sys.modules.get("scipy.sparse")  # not imported: X cannot be a sparse matrix
    if sparse is not None and sparse.issparse(X):  # before the dict test: a dok_matrix is a dict
        raise InputTypeError(f"{name} is a sparse matrix; sparse input is not supported: pass X.toarray()")
    if isinstance(X, dict):
        if not X:
            raise InputError(f"{name} is an empty dict; give {{layer: (n, D) array}}")
        layers = {int(layer): np.asarray(values) for layer, values in X.items()}
    else:
        X = np.asarray(X)
        if X.ndim == 2:  # one layer: layer 0
            layers = {0: X}
        elif X.ndim == 3:
            layers = {layer: X[:, layer] for layer in range(X.shape[1])}
        else:
            raise InputError(f"{name} has shape {X.shape}; expected (n_utterances, n_layers, dim), "
                             f"(n_utterances, dim) as layer 0, or a dict {{layer: (n_utterances, dim) array}}. "
                             "Reshape your data: X.reshape(1, -1) for one row, X.reshape(-1, 1) for one feature")
    shapes = {layer: values.shape for layer, values in layers.items()}
    first = next(iter(shapes.values()))
    if any(len(s) != 2 for s in shapes.values()) or any(s != first for s in shapes.values()):
        raise InputError(f"{name}: every layer must be an (n, D) array of the same shape; got {shapes}")
    if first[0] == 0:
        raise InputError(f"{name} has no rows")
    return dict(sorted(layers.items()))


def checked_layers(layers_data: dict[int, np.ndarray], layers, name: str) -> dict[int, np.ndarray]:
    """The ``layers`` of a layer dict, each checked as scikit-learn checks an X (numbers, finite, at
    least one row and one column: its messages, which its tools expect), not copied when already numeric."""
    from sklearn.utils.validation import check_array

    out = {}
    for layer in layers:
        try:
            out[layer] = check_array(layers_data[layer], dtype="numeric", input_name=name)
        except TypeError as error:
            raise InputTypeError(f"{name} layer {layer}: {error}") from None
        except ValueError as error:
            raise InputError(f"{name} layer {layer}: {error}") from None
    return out


def as_speakers(speakers, n: int, name: str) -> np.ndarray:
    """``speakers`` as an (n,) array of names, one per row; a row without one is refused."""
    values = np.asarray(speakers, dtype=object)
    if values.ndim != 1 or len(values) != n:
        raise InputError(f"{name} has shape {values.shape}; give one speaker per row ({n} rows)")
    names = np.array(["" if v is None else str(v) for v in values])
    missing = int((names == "").sum())
    if missing:
        raise InputError(f"{name}: {missing} of {n} rows have no speaker; give every row one, or leave "
                         f"{name} out (no per-speaker standardisation)")
    return names


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
        import torch  # the caller's generator is a torch one: loaded already

        parts = []
        while count > 0:
            if self.position >= len(self.order):
                self.order, self.position = torch.randperm(self.n, generator=self.generator).numpy(), 0
            part = self.order[self.position:self.position + count]
            self.position += len(part)
            count -= len(part)
            parts.append(part)
        return np.concatenate(parts)
