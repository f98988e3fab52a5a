"""Frame features (``features="frames"``): ragged per-utterance frames and attentive pooling.

Layout: exactly the cache's ``frames/layer_<l>`` arrays. Per layer one ``(total_frames, D)``
array (float16 as stored, or float32); utterance ``i`` is rows ``offsets[i] : offsets[i] +
lengths[i]``, the same for every layer::

    >>> X = FrameFeatures({3: frames3, 12: frames12}, lengths)          # offsets = cumsum
    >>> X = FrameFeatures.from_lists({12: [utt0_frames, utt1_frames]})  # (T_i, D) each

Memory: the arrays are held as given, i.e. ``total_frames x D x bytes x layers`` (25 h of
speech at 50 frames/s, D = 1024, float16: 4.5 M frames x 2 kB = 9.2 GB per layer). Batches are
padded to their longest utterance and converted to float32 one batch at a time:
``batch x T_max x D x 4 x layers`` bytes.

Attentive pooling of one branch with frames ``h_1..h_T`` (a group's layers averaged frame by
frame first): ``a_t = softmax_t(w . h_t + c)`` over the real frames only, pooled ``sum_t a_t h_t``.
``w`` and ``c`` start at zero, so training starts from mean pooling.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from sers.classifiers.data import InputError


class FrameFeatures(Mapping):
    """Frames of several layers of ``n`` utterances: a mapping ``layer -> (total_frames, D) array``
    with ``lengths`` (frames per utterance) and ``offsets`` (first row of each utterance)."""

    def __init__(self, layers: dict, lengths, offsets=None, name: str = "X"):
        if not layers:
            raise InputError(f"{name} holds no layer")
        self._layers = {int(layer): values for layer, values in sorted(layers.items())}
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = (np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64) if offsets is None
                        else np.asarray(offsets, dtype=np.int64))
        shapes = {layer: tuple(values.shape) for layer, values in self._layers.items()}
        first = next(iter(shapes.values()))
        if any(len(s) != 2 or s != first for s in shapes.values()):
            raise InputError(f"{name}: every layer must be a (total_frames, D) array of the same shape; got {shapes}")
        if self.lengths.ndim != 1 or len(self.lengths) == 0 or self.offsets.shape != self.lengths.shape:
            raise InputError(f"{name}: lengths and offsets must be 1-D, one per utterance, and not empty")
        if self.lengths.min() < 1 or self.offsets.min() < 0 or (self.offsets + self.lengths).max() > first[0]:
            raise InputError(f"{name}: every utterance needs >= 1 frame inside the {first[0]} frame rows")

    @classmethod
    def from_lists(cls, layers: dict, name: str = "X") -> "FrameFeatures":
        """From ``{layer: [(T_i, D) array per utterance]}`` (concatenated, dtype kept)."""
        lists = {int(layer): list(values) for layer, values in layers.items()}
        lengths = [len(u) for u in next(iter(lists.values()))]
        if any([len(u) for u in values] != lengths for values in lists.values()):
            raise InputError(f"{name}: the layers give different frame counts for the same utterances")
        return cls({layer: np.concatenate(values) for layer, values in lists.items()}, lengths, name=name)

    def __getitem__(self, layer):
        return self._layers[layer]

    def __iter__(self):
        return iter(self._layers)

    def __len__(self):
        return len(self._layers)

    @property
    def n_utterances(self) -> int:
        return len(self.lengths)

    def select(self, layers) -> "FrameFeatures":
        """The same utterances, only ``layers`` (no copy)."""
        return FrameFeatures({layer: self._layers[layer] for layer in layers}, self.lengths, self.offsets)

    def subset(self, rows) -> "FrameFeatures":
        """Utterances ``rows`` only (no copy of the frames)."""
        return FrameFeatures(self._layers, self.lengths[rows], self.offsets[rows])

    def mean_pooled(self) -> dict[int, np.ndarray]:
        """{layer: (n, D) float32} mean over each utterance's frames (what the cache's pooled/mean holds)."""
        index = self.frame_rows(np.arange(self.n_utterances))
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        return {layer: (np.add.reduceat(np.asarray(values[index], np.float64), starts, axis=0)
                        / self.lengths[:, None]).astype(np.float32) for layer, values in self._layers.items()}

    def frame_rows(self, rows) -> np.ndarray:
        """Frame-row indices of utterances ``rows``, concatenated in that order."""
        lengths = self.lengths[rows]
        starts = np.repeat(self.offsets[rows] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return starts + np.arange(lengths.sum())

    def frames_of(self, layer: int):
        """Every frame of the utterances at ``layer`` (for statistics): the array itself when the
        utterances tile it in order, else a copy of their rows."""
        values = self._layers[layer]
        tiled = self.offsets[0] == 0 and np.array_equal(self.offsets[1:], np.cumsum(self.lengths)[:-1]) \
            and self.lengths.sum() == len(values)
        return values if tiled else values[self.frame_rows(np.arange(self.n_utterances))]


def as_frames(X, name: str) -> FrameFeatures:
    if not isinstance(X, FrameFeatures):
        raise InputError(f"{name}: features='frames' needs a FrameFeatures (per layer one (total_frames, D) "
                         f"array plus lengths; see sers.classifiers.frames), not {type(X).__name__}")
    return X


def padded_batch(X: FrameFeatures, layers: list[int], rows: np.ndarray,
                 stats: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """((B, len(layers), T_max, D) float32 standardised frames, zero padded; (B, T_max) bool mask)."""
    lengths = X.lengths[rows]
    t_max = int(lengths.max())
    mask = np.arange(t_max)[None, :] < lengths[:, None]
    utterance, time = np.nonzero(mask)  # row-major: utterance by utterance, frames in order
    index = X.frame_rows(rows)
    mean, std = stats
    out = np.zeros((len(rows), len(layers), t_max, X[layers[0]].shape[1]), np.float32)
    for slot, layer in enumerate(layers):
        frames = np.asarray(X[layer][index], dtype=np.float32)
        frames -= mean[slot]
        frames /= std[slot]
        out[utterance, slot, time] = frames
    return out, mask


class AttentivePooling(nn.Module):
    """(B, T, D) frames and a (B, T) mask of real frames -> (B, D): softmax-weighted sum of the
    real frames; the weights come from a learned scoring vector, zero-initialised (mean pooling)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def weights(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) attention weights; exactly zero on padding, summing to one over the real frames."""
        scores = self.score(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,btd->bd", self.weights(frames, mask), frames)
