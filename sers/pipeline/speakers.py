"""Speaker standardisation: each speaker's utterances (pooled, frames, vowel segments) by that speaker's own statistics.

Every layer of every utterance becomes ``(x - mean_s) / std_s``, with the mean and std (per
dimension) of the pooled features of all utterances of its speaker ``s`` in the same cache.
No emotion label is read; at test time a speaker's statistics come from that speaker's own
(unlabelled) test utterances, so a speaker needs several of them. Speakers with fewer than
``MIN_UTTERANCES`` utterances are standardised by the statistics of all the cache's rows
instead (their own would be noise).

It removes what a voice adds to every utterance (its pitch range, timbre, channel), which the
emotion classifier would otherwise learn in one language and meet differently in the other:
on the espeak-ng benchmark it raised every method, `lam` by +0.17 UAR averaged over 8
directions (docs/benchmarks/transfer.md, "defaults" against "per-language").

A vowel segment (``--align vowel``, ``--level segment``) is a mean over frames, as a ``mean``
pooled utterance is, and a frame (``--features frames``) is what those means average: both are
standardised by the statistics of their utterance's speaker, the same affine map as that
utterance, so segments, frames and utterances stay in one space.

``--speaker-norm auto`` (the default of `sers train` and `sers similarity`) standardises when
every row read has a speaker and, where frames or vowel segments are read, the caches store the
pooled mean (and `sers train` pools utterances with ``--stat mean`` alongside vowel segments);
otherwise it says why it does not. ``on`` insists (an error
names what is missing), ``off`` never does. The estimator's own per-language standardisation
then acts on top (on standardised features it changes little).
"""
from __future__ import annotations

import numpy as np

from sers.errors import SersError
from sers.pipeline.options import SPEAKER_NORMS

MIN_UTTERANCES = 5


def decide(choice: str, caches, *, features: str = "pooled", level: str = "utterance", align: str = "utterance",
           stat: str = "mean") -> tuple[bool, str | None]:
    """(standardise per speaker?, why not, or None): ``auto`` as the module docstring says."""
    if choice not in SPEAKER_NORMS:
        raise SersError(f"--speaker-norm must be one of {', '.join(SPEAKER_NORMS)}, not {choice!r}")
    if choice == "off":
        return False, None
    reason = None
    by_means = features == "frames" or level != "utterance" or align != "utterance"  # by the speaker's mean statistics
    if features != "frames" and stat != "mean" and by_means:
        reason = f"vowel segments are means, standardised like their utterances only with --stat mean, not {stat}"
    elif by_means:
        reason = next((f"{c.path} stores no pooled mean, whose per-speaker statistics standardise frames and "
                       "vowel segments" for c in caches if "mean" not in c.pool_stats), None)
    reason = reason or next(filter(None, map(missing_speakers, caches)), None)
    if reason is None:
        return True, None
    if choice == "on":
        raise SersError(f"--speaker-norm on: {reason}; use --speaker-norm off (or auto)")
    return False, f"not standardised per speaker: {reason}"


def missing_speakers(cache) -> str | None:
    """What is missing for speaker standardisation of ``cache`` ("3 of 600 utterances in X have no
    speaker"), or None."""
    missing = int((cache.utterances.speaker.astype(str) == "").sum())
    return f"{missing} of {len(cache.utterances)} utterances in {cache.path} have no speaker" if missing else None


def segment_features(cache, layer: int, rows, by_speaker: "SpeakerStandardiser | None" = None) -> np.ndarray:
    """The (segments, D) pooled features of rows ``rows`` of ``cache.segments`` at ``layer``, each
    standardised as its utterance when ``by_speaker`` is given (`sers similarity --level segment`
    and `sers train --align vowel` read segments through this)."""
    values = cache.segment_pooled(layer, rows=rows)
    return values if by_speaker is None else by_speaker.segments(layer, values, rows)


class SpeakerStandardiser:
    """Per-speaker statistics of one cache, computed for a layer when first needed (one read of that
    layer); ``standardise(layer, x, rows)`` standardises the (rows, D) features ``x`` of the cache's ``rows``."""

    @classmethod
    def for_features(cls, cache, features: str, stat: str) -> "SpeakerStandardiser":
        """The standardiser of what a run reads: frames go by the speaker's mean statistics, pooled
        utterances by those of their own ``stat``."""
        return cls(cache, "mean" if features == "frames" else stat)

    def __init__(self, cache, stat: str = "mean"):
        self.cache, self.stat = cache, stat
        names, self.speaker_of = np.unique(cache.utterances.speaker.astype(str), return_inverse=True)
        self.counts = np.bincount(self.speaker_of, minlength=len(names))
        self.few = self.counts < MIN_UTTERANCES  # standardised by the statistics of the whole cache
        self._stats = {}

    def statistics(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (speakers, D), of ``layer``."""
        if layer not in self._stats:
            x = self.cache.pooled(layer, stat=self.stat).astype(np.float64)
            sums, squares = np.zeros((len(self.counts), x.shape[1])), np.zeros((len(self.counts), x.shape[1]))
            np.add.at(sums, self.speaker_of, x)
            np.add.at(squares, self.speaker_of, x * x)
            mean = sums / self.counts[:, None]
            std = np.sqrt(np.maximum(squares / self.counts[:, None] - mean ** 2, 0.0))
            mean[self.few], std[self.few] = x.mean(axis=0), x.std(axis=0)
            self._stats[layer] = mean, np.maximum(std, 1e-8 + 1e-6 * std.max())  # constant dimensions stay 0
        return self._stats[layer]

    def standardise(self, layer: int, x: np.ndarray, rows) -> np.ndarray:
        mean, std = self.statistics(int(layer))
        speaker = self.speaker_of[np.asarray(rows, dtype=int)]
        return ((x - mean[speaker]) / std[speaker]).astype(np.float32)

    def segments(self, layer: int, x: np.ndarray, segment_rows) -> np.ndarray:
        """The (segments, D) features ``x`` of rows ``segment_rows`` of ``cache.segments``, each by the
        statistics of its utterance's speaker."""
        return self.standardise(layer, x, self.cache.segments.utterance[np.asarray(segment_rows, dtype=int)])

    def frames(self, layer: int, block: np.ndarray, rows, lengths, chunk_frames: int = 1 << 16) -> np.ndarray:
        """The (frames, D) ``block`` of the utterance ``rows`` (``lengths`` frames each, end to end),
        each frame by its utterance's speaker statistics; the block's dtype is kept (float16 frames
        stay float16), converted a chunk at a time, in place where the block is writable."""
        mean, std = (values.astype(np.float32) for values in self.statistics(int(layer)))
        speaker = np.repeat(self.speaker_of[np.asarray(rows, dtype=int)], np.asarray(lengths, dtype=np.int64))
        out = block if block.flags.writeable else np.empty_like(block)
        for start in range(0, len(block), chunk_frames):
            part = slice(start, start + chunk_frames)
            with np.errstate(over="ignore"):  # checked on the next line, with an error that says what to do
                out[part] = (block[part].astype(np.float32) - mean[speaker[part]]) / std[speaker[part]]
            if not np.isfinite(out[part]).all():  # a near-constant dimension of the means can overflow float16
                raise SersError(f"{self.cache.path}: frames of layer {layer} standardised per speaker exceed the "
                                f"range of {block.dtype} (a dimension barely varies between a speaker's "
                                "utterance means); use --speaker-norm off")
        return out

    def block(self, layers, block: np.ndarray, rows) -> np.ndarray:
        """A (layers, rows, D) block of ``rows``, standardised in place."""
        for i, layer in enumerate(layers):
            block[i] = self.standardise(layer, block[i], rows)
        return block
