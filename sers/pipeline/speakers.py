"""Speaker standardisation of a cache: each speaker's utterances (pooled, frames, vowel segments) by that speaker's own statistics.

Every layer of every utterance becomes ``(x - mean_s) / std_s``, with the mean and std (per
dimension) of the pooled features of all utterances of its speaker ``s`` in the same cache;
speakers with fewer than ``MIN_UTTERANCES`` utterances take the statistics of all the cache's
rows. The arithmetic, and why it helps, is in :mod:`sers.classifiers.speakers` (arrays in), which
the estimator's ``speakers=`` uses too; this module reads a cache's layers for it and decides
when it applies.

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

from sers.classifiers.data import InputError
from sers.classifiers.speakers import MIN_UTTERANCES, SpeakerStatistics  # noqa: F401 (callers read speakers.MIN_UTTERANCES)
from sers.errors import SersError
from sers.pipeline.options import SPEAKER_NORMS


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
    layer); ``standardise(layer, x, rows)`` standardises the (rows, D) features ``x`` of the cache's ``rows``.
    The arithmetic is :class:`sers.classifiers.speakers.SpeakerStatistics`'s, over all the cache's
    utterances, so the estimator's ``speakers=`` runs the same code."""

    @classmethod
    def for_features(cls, cache, features: str, stat: str) -> "SpeakerStandardiser":
        """The standardiser of what a run reads: frames go by the speaker's mean statistics, pooled
        utterances by those of their own ``stat``."""
        return cls(cache, "mean" if features == "frames" else stat)

    def __init__(self, cache, stat: str = "mean"):
        self.cache, self.stat = cache, stat
        self.by_speaker = SpeakerStatistics(cache.utterances.speaker.astype(str), f"{cache.path}: speaker")
        self.speaker_of, self.counts, self.few = self.by_speaker.speaker_of, self.by_speaker.counts, self.by_speaker.few

    def statistics(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (speakers, D), of ``layer``."""
        if int(layer) not in self.by_speaker.layers:
            self.by_speaker.fit_layer(int(layer), self.cache.pooled(int(layer), stat=self.stat), str(self.cache.path))
        return self.by_speaker.statistics(int(layer))

    def standardise(self, layer: int, x: np.ndarray, rows) -> np.ndarray:
        self.statistics(layer)
        return self.by_speaker.standardise(int(layer), x, self.speaker_of[np.asarray(rows, dtype=int)])

    def segments(self, layer: int, x: np.ndarray, segment_rows) -> np.ndarray:
        """The (segments, D) features ``x`` of rows ``segment_rows`` of ``cache.segments``, each by the
        statistics of its utterance's speaker."""
        return self.standardise(layer, x, self.cache.segments.utterance[np.asarray(segment_rows, dtype=int)])

    def frames(self, layer: int, block: np.ndarray, rows, lengths, chunk_frames: int = 1 << 16) -> np.ndarray:
        """The (frames, D) ``block`` of the utterance ``rows`` (``lengths`` frames each, end to end),
        each frame by its utterance's speaker statistics; float16 frames stay float16."""
        self.statistics(layer)
        try:
            return self.by_speaker.standardise_frames(int(layer), block, self.speaker_of[np.asarray(rows, dtype=int)],
                                                      lengths, chunk_frames)
        except InputError as error:
            raise SersError(f"{self.cache.path}: {error}; use --speaker-norm off") from None

    def block(self, layers, block: np.ndarray, rows) -> np.ndarray:
        """A (layers, rows, D) block of ``rows``, standardised in place."""
        for i, layer in enumerate(layers):
            block[i] = self.standardise(layer, block[i], rows)
        return block
