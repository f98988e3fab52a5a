"""What `sers train` reads: the rows of each part of the data, their features, and the record of both.

The parts are ``source_train`` (labelled, trains the head), ``source_dev`` (labelled, selects the
epoch), ``target_train`` (features only: unlabelled alignment data), ``target_test`` (labels read
only after training, to score) and optionally ``target_dev`` (labelled target model selection).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sers.errors import SersError
from sers.pipeline.frame_features import read_frames
from sers.pipeline.speakers import SpeakerStandardiser
from sers.pipeline.vowel_alignment import read_segments

SOURCE_DEV_SPLITS = ("dev", "validation", "valid", "val")


@dataclass(frozen=True)
class Splits:
    """Which split of each cache plays which part (see the module docstring for what is read when)."""
    source_train: str = "train"
    source_dev: str | None = None     # default: "dev", else "validation", "valid" or "val"
    target_train: str = "train"
    target_test: str = "test"
    target_dev: str | None = None     # labelled target split for model selection (target-selected)


def _splits(cache) -> list[str]:
    return sorted(set(cache.utterances.split.astype(str)))


def _split_rows(cache, split: str, role: str, option: str, labelled: bool) -> np.ndarray:
    mask = cache.utterances.mask(split=split, labelled=True if labelled else None)
    if not mask.any():
        what = "labelled utterances" if labelled else "utterances"
        raise SersError(f"{cache.path}: no {what} in split {split!r} for the {role} "
                        f"(splits: {', '.join(_splits(cache))}); choose one with {option}")
    return np.flatnonzero(mask)


def _source_dev_split(cache, requested):
    if requested:
        return requested
    for name in SOURCE_DEV_SPLITS:
        if name in _splits(cache):
            return name
    raise SersError(f"{cache.path}: no 'dev' or 'validation' split to select the model on "
                    f"(splits: {', '.join(_splits(cache))}); name one with --source-dev")


def shared(block: np.ndarray, name: str, spill_dir) -> np.ndarray:
    """With ``spill_dir`` the block is saved there and memory-mapped, so that worker processes
    share it through the page cache (joblib passes memory-mapped arrays by file name)."""
    if spill_dir is None:
        return block
    path = Path(spill_dir) / f"{name}.npy"
    np.save(path, block)
    return np.load(path, mmap_mode="r")


def _read(cache, layers, parts: dict[str, np.ndarray], stat: str, log, share, features="pooled",
          by_speaker: SpeakerStandardiser | None = None) -> dict:
    """One read of ``layers`` for the rows of all ``parts``; each part is a view of that block.
    ``share(block, name)`` may put the block where worker processes map it (:func:`shared`).
    ``by_speaker``: standardise each speaker by its own statistics (:mod:`sers.pipeline.speakers`)."""
    if features == "frames":
        return read_frames(cache, layers, parts, log, share=share, by_speaker=by_speaker)
    rows = np.concatenate(list(parts.values()))
    if log:
        size = len(layers) * len(rows) * cache.hidden_size * 4
        log(f"reading {len(layers)} layers x {len(rows)} utterances ({size / 1e6:.0f} MB) from {cache.path}")
    block = cache.pooled_layers(layers, rows=rows, stat=stat)
    if by_speaker is not None:
        block = by_speaker.block(layers, block, rows)
    block = share(block, next(iter(parts)))
    out, start = {}, 0
    for name, part in parts.items():
        out[name] = {layer: block[i, start:start + len(part)] for i, layer in enumerate(layers)}
        start += len(part)
    return out


class Parts:
    """The rows of each part (source_train, source_dev, target_train, target_test[, target_dev]),
    their split names, and the labels read before training (never those of target_train or target_test)."""

    def __init__(self, src, tgt, splits: Splits):
        self.src, self.tgt = src, tgt
        source_dev = _source_dev_split(src, splits.source_dev)
        self.splits = {"source_train": splits.source_train, "source_dev": source_dev,
                       "target_train": splits.target_train, "target_test": splits.target_test}
        self.rows = {
            "source_train": _split_rows(src, splits.source_train, "source training data", "--source-train", True),
            "source_dev": _split_rows(src, source_dev, "source model selection", "--source-dev", True),
            "target_train": _split_rows(tgt, splits.target_train, "unlabelled target data", "--target-train", False),
            "target_test": _split_rows(tgt, splits.target_test, "target test", "--target-test", False)}
        if splits.target_dev:
            self.splits["target_dev"] = splits.target_dev
            self.rows["target_dev"] = _split_rows(tgt, splits.target_dev, "target model selection", "--target-dev",
                                                  True)
        self.labels = {name: src.utterances.label[self.rows[name]].astype(str)
                       for name in ("source_train", "source_dev")}
        if splits.target_dev:  # the only target labels read before training, and only when asked for
            self.labels["target_dev"] = tgt.utterances.label[self.rows["target_dev"]].astype(str)
        for name in [n for n in ("source_dev", "target_dev") if n in self.labels]:
            unseen = sorted(set(self.labels[name]) - set(self.labels["source_train"]))
            if unseen:
                raise SersError(f"split {self.splits[name]!r} ({name.replace('_', ' ')}) has labels {unseen} that "
                                f"never occur in source split {splits.source_train!r}; map or drop them in the "
                                "manifest")

    def cache_of(self, name: str):
        return self.src if name.startswith("source") else self.tgt


def read_data(src, tgt, plan, parts: Parts, stat, log, share, features, by_speaker=False) -> dict:
    """Every feature the runs read, once: ``data[part]`` its ``plan.layers`` (a layer dict, or frames),
    ``data["segments"][side]`` the VowelSegments of ``plan.segment_layers`` (align="vowel" only),
    ``data["y_" + part]`` the labels of :class:`Parts`, ``data["ids_" + part]`` the utterance ids.
    ``by_speaker``: standardise utterances and their vowel segments by their speaker's statistics."""
    rows = parts.rows
    standardisers = {side: SpeakerStandardiser.for_features(cache, features, stat) if by_speaker else None
                     for side, cache in (("source", src), ("target", tgt))}
    data = {**_read(src, plan.layers, {k: rows[k] for k in ("source_train", "source_dev")}, stat, log, share,
                    features, standardisers["source"]),
            **_read(tgt, plan.layers, {k: rows[k] for k in rows if k.startswith("target")}, stat, log, share,
                    features, standardisers["target"])}
    if plan.segment_layers:  # the segments of the training utterances, with their vowel class (never their label)
        data["segments"] = {side: read_segments(cache, plan.segment_layers, rows[f"{side}_train"], f"segments_{side}",
                                                parts.splits[f"{side}_train"], log, share=share,
                                                by_speaker=standardisers[side])
                            for side, cache in (("source", src), ("target", tgt))}
    data.update({f"y_{name}": values for name, values in parts.labels.items()})
    data.update({f"ids_{name}": parts.cache_of(name).utterances.id[r] for name, r in rows.items()})
    return data


def feature_config(features: str, stat: str, cache, by_speaker: bool = False) -> dict:
    """What config.json says about the features read: the pooled statistic or the frame stride, and
    whether speakers were standardised."""
    if features == "frames":
        return {"frame_stride": cache.frame_stride, "speaker_standardised": by_speaker}
    return {"stat": stat, "speaker_standardised": by_speaker}


def provenance(src, tgt, parts: Parts) -> dict:
    def counts(values):
        names, n = np.unique(values, return_counts=True)
        return {str(a): int(b) for a, b in zip(names, n)}

    def part(name, labels_read):
        entry = {"split": parts.splits[name], "n": int(len(parts.rows[name])), "labels_read": labels_read}
        if name in parts.labels:
            entry["label_counts"] = counts(parts.labels[name])
        return entry

    return {"source": {"path": str(src.path), "model": src.model_description(),
                       "manifest_digest": src.manifest_digest,
                       "train": part("source_train", "training"), "dev": part("source_dev", "model selection")},
            "target": {"path": str(tgt.path), "model": tgt.model_description(),
                       "manifest_digest": tgt.manifest_digest,
                       "train": part("target_train", "never (unlabelled alignment data)"),
                       "test": part("target_test", "after training, for metrics only"),
                       "dev": part("target_dev", "model selection") if "target_dev" in parts.splits else None}}
