"""Per-speaker standardisation: each utterance's features by the statistics of its speaker's utterances.

Every layer of every row becomes ``(x - mean_s) / std_s``, with the mean and std (per dimension)
of the rows of its speaker ``s``. No emotion label is read; at test time a speaker's statistics
come from that speaker's own (unlabelled) test utterances, so a speaker needs several of them.
Speakers with fewer than ``MIN_UTTERANCES`` rows are standardised by the statistics of all the
rows instead (their own would be noise).

It removes what a voice adds to every utterance (its pitch range, timbre, channel), which the
emotion classifier would otherwise learn in one language and meet differently in the other:
on the espeak-ng benchmark it raised every method, ``lam`` by +0.17 UAR averaged over 8
directions (docs/benchmarks/transfer.md, "defaults" against "per-language").

This is the one implementation: ``sers train``, ``sers evaluate`` and ``sers similarity`` read a
cache through :class:`sers.pipeline.speakers.SpeakerStandardiser`, which computes these statistics
over all of a cache's utterances; the estimator's ``speakers=`` arguments compute them over the
rows passed together (:func:`standardise_by_speaker`)::

    >>> stats = SpeakerStatistics(speakers_all).fit(X_all)     # X: (n, L, D), (n, D) or {layer: (n, D)}
    >>> X_test_z = stats.transform(X_test, speakers_test)       # rows of any of those speakers
    >>> X_z = standardise_by_speaker(X, speakers)               # statistics from X's own rows
"""
from __future__ import annotations

import numpy as np

from sers.classifiers import data
from sers.classifiers.data import InputError

MIN_UTTERANCES = 5


class SpeakerStatistics:
    """Per speaker and layer, the (mean, std) of the rows of ``speakers`` (one name per row).

    ``fit(X)`` computes them for every layer of ``X`` (those rows' features), ``fit_layer`` for one;
    ``transform(X, speakers)`` standardises rows of the same speakers, ``standardise`` one layer.
    """

    def __init__(self, speakers, name: str = "speakers"):
        values = np.asarray(speakers, dtype=object)
        if values.ndim != 1:
            raise InputError(f"{name} has shape {values.shape}; give one speaker name per row (a 1-D list or array)")
        names = data.as_speakers(values, len(values), name)
        self.names, self.speaker_of = np.unique(names, return_inverse=True)
        self.counts = np.bincount(self.speaker_of, minlength=len(self.names))
        self.few = self.counts < MIN_UTTERANCES  # standardised by the statistics of all the rows
        self.layers: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, X, name: str = "X") -> "SpeakerStatistics":
        """The statistics of every layer of ``X``, whose rows are those of ``speakers``. Returns self."""
        layers = data.as_layer_dict(X, name)
        for layer, x in data.checked_layers(layers, list(layers), name).items():
            self.fit_layer(layer, x, name)
        return self

    def fit_layer(self, layer: int, x, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (speakers, D) float64, of one layer from its (rows, D) features ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(self.speaker_of):
            raise InputError(f"{name} layer {layer} has shape {x.shape}; expected one row per speaker "
                             f"entry ({len(self.speaker_of)} rows)")
        sums, squares = np.zeros((len(self.counts), x.shape[1])), np.zeros((len(self.counts), x.shape[1]))
        np.add.at(sums, self.speaker_of, x)
        np.add.at(squares, self.speaker_of, x * x)
        mean = sums / self.counts[:, None]
        std = np.sqrt(np.maximum(squares / self.counts[:, None] - mean ** 2, 0.0))
        mean[self.few], std[self.few] = x.mean(axis=0), x.std(axis=0)
        self.layers[int(layer)] = mean, np.maximum(std, 1e-8 + 1e-6 * std.max())  # constant dimensions stay 0
        return self.layers[int(layer)]

    def statistics(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (speakers, D), of ``layer``."""
        if int(layer) not in self.layers:
            raise InputError(f"layer {layer} has no speaker statistics (fitted: {sorted(self.layers)}); "
                             "fit on features that include it")
        return self.layers[int(layer)]

    def index(self, speakers, n: int, name: str = "speakers") -> np.ndarray:
        """The position in :attr:`names` of each of the ``n`` rows' ``speakers``; an unknown one is refused."""
        names = data.as_speakers(speakers, n, name)
        position = np.searchsorted(self.names, names)
        known = (position < len(self.names)) & (self.names[np.minimum(position, len(self.names) - 1)] == names)
        if not known.all():
            unknown = sorted(set(names[~known].tolist()))
            raise InputError(f"{name}: speakers {unknown[:5]} have no statistics; fit SpeakerStatistics on rows "
                             "that include their utterances")
        return position

    def standardise(self, layer: int, x: np.ndarray, speaker_index) -> np.ndarray:
        """(rows, D) float32: the features ``x`` of one layer, each row by its speaker's statistics
        (``speaker_index``: positions in :attr:`names`, as :meth:`index` gives)."""
        mean, std = self.statistics(layer)
        speaker = np.asarray(speaker_index, dtype=int)
        return ((x - mean[speaker]) / std[speaker]).astype(np.float32)

    def transform(self, X, speakers, name: str = "X"):
        """``X`` (any of the estimator's pooled layouts) standardised, in the same layout."""
        layers = data.as_layer_dict(X, name)
        checked = data.checked_layers(layers, list(layers), name)
        speaker = self.index(speakers, data.n_rows(layers), f"speakers of {name}")
        return _like(X, {layer: self.standardise(layer, x, speaker) for layer, x in checked.items()})

    def standardise_frames(self, layer: int, block: np.ndarray, speaker_index, lengths,
                           chunk_frames: int = 1 << 16) -> np.ndarray:
        """The (frames, D) ``block`` of utterances of speakers ``speaker_index`` (``lengths`` frames each,
        end to end), each frame by its utterance's speaker statistics: a frame is what a mean-pooled
        utterance averages, so both get the same affine map. The block's dtype is kept (float16
        frames stay float16), converted a chunk at a time, in place where the block is writable."""
        mean, std = (values.astype(np.float32) for values in self.statistics(layer))
        speaker = np.repeat(np.asarray(speaker_index, dtype=int), np.asarray(lengths, dtype=np.int64))
        out = block if block.flags.writeable else np.empty_like(block)
        for start in range(0, len(block), chunk_frames):
            part = slice(start, start + chunk_frames)
            with np.errstate(over="ignore"):  # checked on the next line, with an error that says what to do
                out[part] = (block[part].astype(np.float32) - mean[speaker[part]]) / std[speaker[part]]
            if not np.isfinite(out[part]).all():  # a near-constant dimension of the means can overflow float16
                raise InputError(f"frames of layer {layer} standardised per speaker exceed the range of "
                                 f"{block.dtype} (a dimension barely varies between a speaker's utterance means)")
        return out


def standardise_layers(layers_data: dict, speakers, layers, name: str = "X") -> dict[int, np.ndarray]:
    """The ``layers`` of a layer dict, each row standardised by the statistics of its speaker's rows
    among these (what the estimator does with ``speakers=``)."""
    stats = SpeakerStatistics(speakers, f"speakers of {name}")
    if len(stats.speaker_of) != data.n_rows(layers_data):
        raise InputError(f"speakers of {name} has {len(stats.speaker_of)} entries for "
                         f"{data.n_rows(layers_data)} rows; give one speaker per row")
    out = {}
    for layer, x in data.checked_layers(layers_data, layers, name).items():
        stats.fit_layer(layer, x, name)
        out[layer] = stats.standardise(layer, x, stats.speaker_of)
    return out


def standardise_by_speaker(X, speakers, name: str = "X"):
    """``X`` (any of the estimator's pooled layouts) with each row standardised by the statistics of its
    speaker's rows in ``X``; the same layout back."""
    layers = data.as_layer_dict(X, name)
    return _like(X, standardise_layers(layers, speakers, list(layers), name))


def _like(X, layers: dict[int, np.ndarray]):
    """A layer dict in ``X``'s layout: a dict, an (n, L, D) or an (n, D) array."""
    if isinstance(X, dict):
        return layers
    if np.ndim(X) == 2:
        return layers[0]
    return np.stack([layers[layer] for layer in sorted(layers)], axis=1)
