"""Reading a cache: metadata, the utterance table, pooled features, frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sers.cache import integrity, journal, schema
from sers.cache import segments as segment_store
from sers.cache.backends import open_backend
from sers.errors import SersError


class UtteranceTable:
    """Columns of equal length as numpy arrays, reachable as attributes (``table.label``)."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getattr__(self, name):
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name) -> np.ndarray:
        return self.columns[name]

    def mask(self, split=None, language=None, labelled=None) -> np.ndarray:
        """Rows in ``split`` (a name or list), ``language``; ``labelled=True`` keeps labelled rows."""
        keep = np.ones(len(self), bool)
        for column, wanted in (("split", split), ("language", language)):
            if wanted is not None:
                wanted = [wanted] if isinstance(wanted, str) else list(wanted)
                keep &= np.isin(self.columns[column].astype(str), wanted)
        if labelled is not None:
            keep &= (self.columns["label"] != "") == labelled
        return keep

    def to_pandas(self):
        """A pandas DataFrame, one row per utterance, indexed by id (the index is the only ``id``, so that
        ``reset_index()`` works; :func:`sers.cache.from_arrays` takes the table back either way)."""
        import pandas as pd

        return pd.DataFrame({name: values for name, values in self.columns.items()}).set_index("id")

    def select(self, rows) -> "UtteranceTable":
        return UtteranceTable({name: values[rows] for name, values in self.columns.items()})

    def counts(self, *columns: str) -> dict[tuple, int]:
        keys = list(zip(*(self.columns[c] for c in columns)))
        values, counts = np.unique(np.asarray(keys, dtype=str).reshape(len(keys), -1), axis=0,
                                   return_counts=True) if keys else ([], [])
        return {tuple(str(x) for x in v): int(c) for v, c in zip(values, counts)}


class CacheReader:
    """A read-only view of one cache. Open with :func:`sers.cache.open`."""

    def __init__(self, path):
        self.path = Path(path)
        store = journal.live_store(self.path)  # an HDF5 cache being written is read from its journal
        if not store.exists():
            raise SersError(f"{path}: no such cache")
        try:
            self._backend = open_backend(store, "r")
        except SersError:
            raise
        except Exception as exc:  # a folder or file that zarr/h5py cannot open
            raise SersError(f"{path}: not a readable cache ({exc})") from None
        self.attrs = self._backend.attrs
        if self.attrs.get("format") != schema.FORMAT:
            raise SersError(f"{path}: not a sers cache (no '{schema.FORMAT}' format attribute)")
        if int(self.attrs["format_version"]) > schema.FORMAT_VERSION:
            raise SersError(f"{path}: cache format {self.attrs['format_version']} is newer than this "
                            f"sers understands ({schema.FORMAT_VERSION}); upgrade sers")
        columns = {}
        for name, dtype in schema.UTTERANCE_COLUMNS.items():
            key = f"utterances/{name}"
            if name in schema.FILLED_FROM and not self._backend.has(key):  # a cache of older sers
                columns[name] = columns[schema.FILLED_FROM[name]].copy()
                continue
            try:
                values = integrity.read(self._backend, key, (slice(None),),
                                        integrity.column_chunks(self._backend.array(key)),
                                        strings=dtype == np.dtype(object))
            except integrity.ChunkProblem as problem:
                raise SersError(f"{path}: {problem}: the utterance table is damaged, which no re-extraction of "
                                "rows repairs; extract the cache anew with --overwrite") from None
            columns[name] = values
        self.all_utterances = UtteranceTable(columns)
        # Store rows behind the public table: extracted and not failed.
        self._store_rows = np.flatnonzero(columns["done"] & ~columns["failed"])
        self.utterances = self.all_utterances.select(self._store_rows)
        self._row_of_id = {uid: i for i, uid in enumerate(self.utterances.id)}

    # -- metadata -----------------------------------------------------------------------

    num_layers = property(lambda self: int(self.attrs["num_layers"]))
    hidden_size = property(lambda self: int(self.attrs["hidden_size"]))
    model_id = property(lambda self: self.attrs.get("model_id"))
    model_revision = property(lambda self: self.attrs.get("model_revision"))
    model_family = property(lambda self: self.attrs.get("model_family"))
    complete = property(lambda self: bool(self.attrs.get("complete")))
    pool_stats = property(lambda self: list(self.attrs.get("pool_stats", ["mean"])))
    frame_layers = property(lambda self: [int(x) for x in self.attrs.get("frame_layers") or []])
    frame_stride = property(lambda self: int(self.attrs.get("frame_stride") or 1))
    frame_dtype = property(lambda self: np.dtype(self.attrs.get("frame_dtype") or schema.DEFAULT_FRAME_DTYPE))
    sample_rate = property(lambda self: self.attrs.get("sample_rate"))
    frame_rate = property(lambda self: self.attrs.get("frame_rate"))
    created = property(lambda self: self.attrs.get("created"))
    sers_version = property(lambda self: self.attrs.get("sers_version"))
    manifest_digest = property(lambda self: self.attrs.get("manifest_digest"))
    settings = property(lambda self: dict(self.attrs.get("settings") or {}))
    whisper_input = property(lambda self: schema.whisper_input(self.attrs))

    def model_description(self) -> dict:
        """What identifies the model the features came from (see :func:`sers.cache.model_difference`)."""
        return schema.model_description(self.attrs)

    @property
    def errors(self) -> list[dict]:
        columns = {}
        for name in schema.ERROR_COLUMNS:
            key = f"errors/{name}"
            try:
                columns[name] = integrity.read(self._backend, key, (slice(None),),
                                               integrity.column_chunks(self._backend.array(key)), strings=True)
            except integrity.ChunkProblem as problem:
                raise SersError(f"{self.path}: {problem}: the list of failed utterances is damaged; extract the "
                                "cache anew with --overwrite") from None
        return [dict(zip(schema.ERROR_COLUMNS, row)) for row in zip(*columns.values())]

    def require_complete(self) -> "CacheReader":
        if not self.complete:
            done = int(self.all_utterances.done.sum())
            raise SersError(f"{self.path}: extraction is not finished ({done} of "
                            f"{len(self.all_utterances)} utterances); rerun the same `sers extract` to finish it")
        return self

    def check_compatible(self, other: "CacheReader") -> None:
        """Refuse to compare caches of different models or shapes, naming the difference."""
        differences = [schema.model_difference(self.attrs, other.attrs)]
        differences += [(key, self.attrs.get(key), other.attrs.get(key)) for key in ("num_layers", "hidden_size")]
        for key, mine, theirs in filter(None, differences):
            if mine != theirs:
                raise SersError(f"caches come from different models: {key} is {mine!r} in {self.path} "
                                f"but {theirs!r} in {other.path}")
        mine, theirs = schema.whisper_input(self.attrs), schema.whisper_input(other.attrs)
        if mine != theirs:
            raise SersError(f"caches come from different Whisper inputs: {self.path} was extracted with "
                            f"--whisper-input {mine}, {other.path} with {theirs}; extract both the same way")

    # -- features -----------------------------------------------------------------------

    @property
    def splits(self) -> list[str]:
        return sorted(set(self.utterances.split.astype(str).tolist()))

    def rows(self, split=None, language=None) -> np.ndarray:
        """Rows of ``utterances`` in ``split`` (a name or list) and ``language``; a split name
        the cache does not have is an error (a typo must not read as an empty split)."""
        if split is not None:
            unknown = sorted(set([split] if isinstance(split, str) else split) - set(self.splits))
            if unknown:
                raise SersError(f"{self.path}: no split {', '.join(map(repr, unknown))} "
                                f"(splits: {', '.join(self.splits) or 'none'})")
        return np.flatnonzero(self.utterances.mask(split=split, language=language))

    def xy(self, split=None, layers=None, stat: str = "mean"):
        """``(X, y, ids)`` for :class:`~sers.classifiers.estimator.LayerAnchoringClassifier`:
        X is (n, L, D) with every layer (the estimator indexes it by layer number), or with
        ``layers`` the estimator's layer dict ``{layer: (n, D)}``; y the labels ("" = unlabelled)."""
        rows = self.rows(split)
        wanted = range(self.num_layers) if layers is None else [int(layer) for layer in layers]
        block = self.pooled_layers(wanted, rows=rows, stat=stat)
        X = np.ascontiguousarray(block.transpose(1, 0, 2)) if layers is None else dict(zip(wanted, block))
        return X, self.utterances.label[rows].astype(str), self.utterances.id[rows].astype(str)

    def pooled(self, layer: int, split=None, stat: str = "mean", rows=None) -> np.ndarray:
        """(n, D) float32 pooled features of one layer, for ``rows`` or a ``split``."""
        return self.pooled_layers([layer], split=split, stat=stat, rows=rows)[0]

    def pooled_layers(self, layers, split=None, stat: str = "mean", rows=None) -> np.ndarray:
        """(len(layers), n, D) float32; reads one layer at a time."""
        if stat not in self.pool_stats:
            raise SersError(f"{self.path}: pooled statistic {stat!r} is not stored "
                            f"(stored: {', '.join(self.pool_stats)}); extract with --pool {stat}")
        layers = [int(layer) for layer in layers]
        bad = [layer for layer in layers if not 0 <= layer < self.num_layers]
        if bad:
            raise SersError(f"{self.path}: layers {bad} do not exist (layers 0-{self.num_layers - 1})")
        rows = self.rows(split) if rows is None else np.asarray(rows, dtype=int)
        store_rows = self._store_rows[rows]
        name = schema.pooled_name(stat)
        chunk_rows = int(self._backend.array(name).chunks[1])
        out = np.empty((len(layers), len(store_rows), self.hidden_size), np.float32)
        for i, layer in enumerate(layers):
            if not len(store_rows):
                continue
            chunks = integrity.pooled_chunks(layer, store_rows, chunk_rows)
            try:
                if np.all(np.diff(store_rows) == 1):
                    out[i] = integrity.read(self._backend, name, (layer, slice(store_rows[0], store_rows[-1] + 1)),
                                            chunks)
                else:  # one sequential read of the layer
                    out[i] = integrity.read(self._backend, name, (layer,), chunks)[store_rows]
            except integrity.ChunkProblem as problem:
                bad = np.isin(store_rows // chunk_rows, [c for _, c, _ in problem.chunks])
                raise self._damaged(problem, store_rows[bad]) from None
        self._check_finite(out, layers, rows, f"pooled {stat}")
        return out

    def _check_finite(self, values: np.ndarray, layers, rows, what: str) -> None:
        """Refuse NaN/inf features (layers x rows x D), naming the layers and utterance ids: one NaN
        row turns a layer's covariance into NaN, which a ranking then reads as best or worst."""
        bad = schema.nonfinite(values)
        if bad is None:
            return
        bad_rows, layer_positions = bad
        bad_layers = [int(layers[i]) for i in layer_positions]
        ids = [str(self.utterances.id[rows[r]]) for r in bad_rows[:5]]
        more = f" and {len(bad_rows) - 5} more" if len(bad_rows) > 5 else ""
        raise SersError(f"{self.path}: non-finite (NaN or inf) {what} features at layer(s) "
                        f"{','.join(map(str, bad_layers))} for utterance(s) {', '.join(ids)}{more}; "
                        "re-extract or re-import the cache without them")

    def _damaged(self, problem: integrity.ChunkProblem, store_rows) -> SersError:
        """One line: the cache, the array, what is wrong, the utterances it holds, how to repair."""
        store_rows = np.unique(np.asarray(store_rows, np.int64))
        ids = [str(uid) for uid in self.all_utterances.id[store_rows]]
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        where = f"rows {store_rows.min()}-{store_rows.max()} of {len(self.all_utterances)}" if len(ids) else "no rows"
        if "model" in self.settings:
            repair = (f"re-extract them: rerun the `sers extract` command that made it, with the same options and "
                      f"--out {self.path} (it checks every chunk and extracts those utterances again)")
        else:
            repair = "this cache was not made by `sers extract`: make it again the way it was made"
        return SersError(f"{self.path}: {problem}, holding {len(ids)} utterance(s) ({shown}; {where}); {repair}")

    # -- aligned segments (vowels) -------------------------------------------------------

    @property
    def has_segments(self) -> bool:
        return segment_store.exists(self._backend)

    @property
    def segment_layers(self) -> list[int]:
        return segment_store.layers(self._backend) if self.has_segments else []

    @property
    def segment_attrs(self) -> dict:
        """Where the segments came from ({} without segments); see docs/cache.md."""
        return segment_store.attrs(self._backend) if self.has_segments else {}

    @property
    def segments_complete(self) -> bool:
        """False only while `sers segments` writes them (or after it was cut off)."""
        return bool(self.segment_attrs.get("complete", True))

    @property
    def segments(self) -> UtteranceTable:
        """One row per aligned segment of a good utterance: utterance (row in ``utterances``),
        start_frame, end_frame, start, end, phone, vowel, and the utterance's id, label,
        split, speaker and language."""
        if not self.has_segments:
            raise SersError(f"{self.path}: this cache has no vowel segments; extract with --alignments "
                            "or add them with `sers segments`")
        if not self.segments_complete:
            raise SersError(f"{self.path}: the vowel segments were not finished; rerun `sers segments` "
                            "(or the `sers extract` that adds them)")
        if not hasattr(self, "_segments"):
            columns = segment_store.read_columns(self._backend)
            public_row = np.full(len(self.all_utterances), -1)
            public_row[self._store_rows] = np.arange(len(self._store_rows))
            keep = public_row[columns["utterance"]] >= 0
            self._segment_store_index = np.flatnonzero(keep)
            columns = {name: values[keep] for name, values in columns.items()}
            columns["utterance"] = public_row[columns["utterance"]]
            for name in ("id", "label", "split", "speaker", "language"):
                columns[name] = self.utterances[name][columns["utterance"]]
            self._segments = UtteranceTable(columns)
        return self._segments

    def segment_pooled(self, layer: int, rows=None) -> np.ndarray:
        """(S, D) float32 mean features of the segments (all, or ``rows`` of ``segments``) at a layer."""
        self.segments  # noqa: B018 - builds the index of good segments
        if int(layer) not in self.segment_layers:
            raise SersError(f"{self.path}: segment features of layer {layer} are not stored "
                            f"(stored: {self.segment_layers})")
        index = self._segment_store_index if rows is None else self._segment_store_index[np.asarray(rows, int)]
        name = f"{segment_store.GROUP}/pooled"
        position = self.segment_layers.index(int(layer))
        if not len(index):
            return np.empty((0, self.hidden_size), np.float32)
        chunk_rows = int(self._backend.array(name).chunks[1])
        try:
            values = integrity.read(self._backend, name, (position,),
                                    integrity.pooled_chunks(position, index, chunk_rows))[index].astype(np.float32)
        except integrity.ChunkProblem as problem:
            owners = segment_store.read_columns(self._backend)["utterance"]
            hit = index[np.isin(index // chunk_rows, [c for _, c, _ in problem.chunks])]
            raise self._damaged(problem, owners[hit]) from None
        if not np.isfinite(values).all():
            utterances = self.segments.utterance if rows is None else self.segments.utterance[np.asarray(rows, int)]
            self._check_finite(values[None], [layer], utterances, "vowel segment")
        return values

    def frames(self, utterance_id: str, layer: int) -> np.ndarray:
        """(n_frames, D) float32 frame features of one utterance at one layer."""
        if int(layer) not in self.frame_layers:
            raise SersError(f"{self.path}: frames of layer {layer} are not stored "
                            f"(stored: {self.frame_layers or 'none'})")
        row = self._row_of_id.get(str(utterance_id))
        if row is None:
            raise SersError(f"{self.path}: no utterance with id {utterance_id!r}")
        start = int(self.utterances.frame_offset[row])
        stop = start + int(self.utterances.n_frames[row])
        return self._read_frames(layer, start, stop, [row]).astype(np.float32)

    def _read_frames(self, layer: int, lo: int, hi: int, rows) -> np.ndarray:
        """Frames ``[lo, hi)`` of one layer, holding the frames of ``rows`` (of ``utterances``)."""
        name = schema.frames_name(layer)
        chunk = int(self._backend.array(name).chunks[0])
        rows = np.asarray(rows, np.int64)
        starts, lengths = self.utterances.frame_offset[rows], self.utterances.n_frames[rows]
        try:
            return integrity.read(self._backend, name, (slice(lo, hi),), integrity.frame_chunks(starts, lengths, chunk))
        except integrity.ChunkProblem as problem:
            hit = integrity.rows_of_frame_chunks(starts, lengths, chunk, problem.chunks)
            raise self._damaged(problem, self._store_rows[rows[hit]]) from None

    def frame_block(self, layer: int, rows) -> tuple[np.ndarray, np.ndarray]:
        """(block, offsets): the frames of ``rows`` of ``utterances`` at one layer, end to end in
        their stored dtype (float16), row ``rows[i]`` at ``block[offsets[i]:offsets[i] + n_frames]``.

        Rows that lie next to each other in the cache are read in one slice, so a block of
        neighbouring utterances costs one sequential read, not one read per utterance."""
        if int(layer) not in self.frame_layers:
            raise SersError(f"{self.path}: frames of layer {layer} are not stored "
                            f"(stored: {self.frame_layers or 'none'})")
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.utterances.frame_offset[rows].astype(np.int64)
        lengths = self.utterances.n_frames[rows].astype(np.int64)
        offsets = np.cumsum(lengths) - lengths
        block = np.empty((int(lengths.sum()), self.hidden_size), dtype=self.frame_dtype)
        for first, last in _touching_runs(starts, lengths):
            lo, hi = int(starts[first]), int(starts[last - 1] + lengths[last - 1])
            block[offsets[first]:offsets[first] + hi - lo] = self._read_frames(layer, lo, hi, rows[first:last])
        return block, offsets

    def to_xarray(self, layers=None, stat: str | None = "mean", *, split=None):
        """An xarray Dataset of pooled features (loaded into memory): ``pooled_<stat>`` with dims
        (layer, utterance, dim), indexed by utterance id, the utterance table as coordinates.
        ``stat=None`` gives every stored statistic."""
        try:
            import xarray as xr
        except ImportError:
            raise SersError("to_xarray needs xarray: pip install 'sers-lam[xarray]'") from None
        rows = self.rows(split)
        layers = list(range(self.num_layers)) if layers is None else [int(layer) for layer in layers]
        coords = {name: ("utterance", values[rows].astype(str) if values.dtype == object else values[rows])
                  for name, values in self.utterances.columns.items() if name not in ("done", "failed")}
        coords["utterance"] = coords.pop("id")[1]
        coords["layer"] = layers
        data = {f"pooled_{s}": (schema.dimension_names(schema.pooled_name(s)),
                                self.pooled_layers(layers, rows=rows, stat=s))
                for s in ([stat] if stat else self.pool_stats)}
        return xr.Dataset(data, coords=coords, attrs={k: str(v) for k, v in self.attrs.items()})

    def close(self) -> None:
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<sers cache {self.path}: {self.model_id}, {len(self.utterances)} utterances, "
                f"{self.num_layers} layers x {self.hidden_size}>")


def _touching_runs(starts: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int]]:
    """[first, last) positions of maximal runs in which each row's frames start where the
    previous row's end: each run is one contiguous slice of the frames array."""
    breaks = np.flatnonzero(starts[1:] != starts[:-1] + lengths[:-1]) + 1
    bounds = [0, *breaks.tolist(), len(starts)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
