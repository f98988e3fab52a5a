"""Features in and out: `sers cache import` (an .npz, a folder of per-utterance arrays) and
`sers cache export` (.npz, Parquet, a Hugging Face datasets folder).

Imported features pass the same checks as extracted ones: numbers, three axes, finite. Every
problem is one SersError naming the file (and the utterances and layers affected), because a
user converting a 40 000-file s3prl dump must be told which file is wrong, not see a traceback.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from sers.cache import schema
from sers.cache.backends import remove_store
from sers.cache.results import ExportResult, ImportResult
from sers.cache.writer import CacheWriter
from sers.atomic import atomic_path
from sers.errors import SersError
from sers.fields import settle

TEXT_COLUMNS = ("label", "split", "speaker", "language", "language_original")
# `sers cache export --format`; without it, OUT's suffix tells npz or parquet
EXPORT_FORMATS = ("npz", "parquet", "hf-datasets")
LAYOUTS = ("nld", "lnd")  # (utterances, layers, dim) as EmoBox/s3prl stack them; (layers, utterances, dim) as stored
FEATURE_SUFFIXES = (".npy", ".pt")


# -- checks shared by every way in --------------------------------------------------------------

def check_features(values, name: str, ids, where) -> np.ndarray:
    """``values`` (L, N, D) as float32, or a SersError: not numbers, not 3-D, or not finite
    (naming the utterances and layers with NaN/inf)."""
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise SersError(f"{where}: {name} holds {values.dtype} values; features must be numbers")
    if values.ndim != 3:
        raise SersError(f"{where}: {name} has shape {values.shape}; expected 3 axes (layers, utterances, dim)")
    values = values.astype(np.float32, copy=False)
    bad = schema.nonfinite(values)
    if bad is not None:
        rows, layers = bad
        shown = ", ".join(repr(str(ids[r])) if r < len(ids) else f"row {r}" for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        raise SersError(f"{where}: {name} has NaN or infinite values in {len(rows)} utterances ({shown}) "
                        f"at layers {layers.tolist()}")
    return values


# -- .npz ---------------------------------------------------------------------------------------

def import_npz(npz_path, out_path, *, layout: str | None = None, split: str | None = None, log=None,
               overwrite: bool = False, **attrs) -> ImportResult:
    """An .npz with ``pooled`` (or ``pooled_mean`` [+ ``pooled_std``]) of shape (N, L, D) or
    (L, N, D) and 1-D ``id`` [label, split, speaker, language, duration] becomes a cache.
    The layout is told by which axis has len(id) rows; ``layout`` ("nld"/"lnd") when both do.
    ``split`` and languages as :func:`settle_text` says (``log`` gets its note)."""
    from sers.cache import from_arrays

    _refuse_existing(out_path, overwrite)
    arrays = _read_npz(npz_path)
    keys = sorted(arrays)
    names = {"mean": "pooled"} if "pooled" in arrays else {"mean": "pooled_mean", "std": "pooled_std"}
    names = {stat: name for stat, name in names.items() if name in arrays}
    if "mean" not in names:
        raise SersError(f"{npz_path}: needs an array 'pooled' or 'pooled_mean' of shape (utterances, layers, "
                        f"dim) or (layers, utterances, dim); found {keys}")
    if "id" not in arrays:
        raise SersError(f"{npz_path}: needs an array 'id' with one id per utterance; found {keys}")
    ids = _ids(arrays["id"], npz_path)
    if not len(ids):
        raise SersError(f"{npz_path}: 'id' is empty: no utterances to import")
    if layout is None and "layout" in arrays:  # written by export()
        layout = str(arrays["layout"])
    pooled = {stat: check_features(_to_lnd(arrays[name], name, len(ids), layout, npz_path), name, ids, npz_path)
              for stat, name in names.items()}
    columns = {"id": ids}
    for name in TEXT_COLUMNS + ("duration",):
        if name in arrays:
            columns[name] = _column(arrays[name], name, len(ids), npz_path)
    columns = settle_text(columns, split, npz_path, log)
    from_arrays(out_path, pooled, columns, overwrite=True, **attrs)
    return _imported(out_path)


def _imported(out_path) -> ImportResult:
    """What the new cache holds, read back from it (what the user will read)."""
    from sers.cache.reader import CacheReader

    with CacheReader(out_path) as cache:
        return ImportResult(out_path, len(cache.utterances), cache.num_layers, cache.hidden_size)


def _read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz; object arrays (ids saved from pandas) are unpickled by an
    unpickler that builds numpy arrays of plain Python values and nothing else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            out = {}
            for name in names:
                try:
                    out[name] = data[name]
                except ValueError:  # an object array: needs pickle
                    out[name] = _safe_object_array(path, name)
            return out
    except SersError:
        raise
    except Exception as exc:  # not a zip, a truncated file, a bad header
        raise SersError(f"{path}: not a readable .npz ({exc})") from None


class _ArrayUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def _safe_object_array(path, name) -> np.ndarray:
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise SersError(f"{path}: array {name!r} is in .npy format {version}; save it with dtype=str")
        # skip the header to the pickled payload
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(handle)
        try:
            values = _ArrayUnpickler(handle).load()
        except Exception as exc:
            raise SersError(f"{path}: array {name!r} holds Python objects sers will not unpickle ({exc}); "
                            f"save it as strings: np.asarray(values, dtype=str)") from None
    if not isinstance(values, np.ndarray) or any(not isinstance(v, (str, int, float, np.generic))
                                                 for v in values.ravel().tolist()):
        raise SersError(f"{path}: array {name!r} must hold strings or numbers; save it with dtype=str")
    return values


def _ids(values, where) -> np.ndarray:
    if values.ndim != 1:
        raise SersError(f"{where}: 'id' has shape {values.shape}; expected one id per utterance (1-D)")
    if values.dtype.kind not in "UOSiu":
        raise SersError(f"{where}: 'id' holds {values.dtype} values; ids must be strings or integers")
    ids = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()], dtype=object)
    empty = [row for row, uid in enumerate(ids) if not uid]
    if empty:
        raise SersError(f"{where}: 'id' is empty at rows {empty[:5]}; every utterance needs an id")
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise SersError(f"{where}: utterance ids must be unique; repeated: "
                        f"{', '.join(map(repr, unique[counts > 1][:5].tolist()))}")
    return ids


def _column(values, name, n, where) -> list:
    if values.shape != (n,):
        raise SersError(f"{where}: {name!r} has shape {values.shape}; expected ({n},), one value per id")
    if name == "duration":
        if values.dtype.kind not in "fiu":
            raise SersError(f"{where}: 'duration' holds {values.dtype} values; expected seconds (numbers)")
        return values.astype(np.float64).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _to_lnd(values, name, n, layout, where) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 3:
        raise SersError(f"{where}: {name} has shape {values.shape}; expected 3 axes, (utterances, layers, dim) "
                        f"or (layers, utterances, dim)")
    if layout is None:
        fits = [lay for lay, axis in (("nld", 0), ("lnd", 1)) if values.shape[axis] == n]
        if not fits:
            raise SersError(f"{where}: {name} has shape {values.shape} but there are {n} ids: neither the first "
                            f"nor the second axis has one row per id")
        if len(fits) == 2:
            raise SersError(f"{where}: {name} has shape {values.shape} with {n} ids on both first axes; "
                            f"say which is which with --layout nld (utterances first) or lnd (layers first)")
        layout = fits[0]
    if layout not in LAYOUTS:
        raise SersError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    axis = 0 if layout == "nld" else 1
    if values.shape[axis] != n:
        raise SersError(f"{where}: {name} has shape {values.shape}: with layout {layout} that is "
                        f"{values.shape[axis]} utterances, but there are {n} ids")
    return values.transpose(1, 0, 2) if layout == "nld" else values


# -- a folder of per-utterance arrays -----------------------------------------------------------

def import_folder(folder, out_path, *, manifest_rows=None, manifest_name=None, split: str | None = None,
                  log=None, pool_stats=("mean",), overwrite: bool = False, **attrs) -> ImportResult:
    """One .npy/.pt file per utterance (EmoBox, s3prl dumps): (L, D) pooled features, or (L, T, D)
    hidden states to pool over T. The id is the file name without suffix; ``manifest_rows`` (the rows
    of a manifest, ``sers.inputs.manifest.read_manifest(path, require_path=False)``: objects with ``id``,
    ``label``, ``split``, ``speaker``, ``language``; ids are the audio file names by default) adds those columns.
    The caller reads the manifest: the cache format knows no input format. ``split`` and languages
    as :func:`settle_text` says; ``manifest_name`` (the manifest's file) is what its errors name."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in FEATURE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise SersError(f"{folder}: no .npy or .pt files (one per utterance) in this folder")
    pool_stats = schema.check_pool_stats(pool_stats)
    _refuse_existing(out_path, overwrite)
    ids = [p.stem for p in files]
    columns = settle_text({"id": ids, **_manifest_columns(manifest_rows, ids)}, split, manifest_name or folder, log)
    first = _pooled_file(files[0], pool_stats)
    num_layers, hidden_size = first["mean"].shape
    writer = CacheWriter.create(out_path, columns, num_layers=num_layers, hidden_size=hidden_size,
                                pool_stats=pool_stats, overwrite=True, **{"model_id": "imported", **attrs})
    try:
        with writer:
            for row, path in enumerate(files):
                pooled = first if row == 0 else _pooled_file(path, pool_stats)
                if pooled["mean"].shape != (num_layers, hidden_size):
                    raise SersError(f"{path}: features of {pooled['mean'].shape[0]} layers x {pooled['mean'].shape[1]}, "
                                    f"but {files[0].name} has {num_layers} x {hidden_size}")
                writer.add(row, pooled)
            writer.finish()
    except BaseException:
        remove_store(out_path)  # an import is quick to redo; never leave half of one behind
        raise
    return _imported(out_path)


def _pooled_file(path: Path, pool_stats) -> dict[str, np.ndarray]:
    values = _load_array(path)
    if values.ndim == 2:
        if pool_stats != ["mean"]:
            raise SersError(f"{path}: holds pooled features (layers, dim); --pool {','.join(pool_stats)} needs "
                            f"(layers, frames, dim) hidden states")
        pooled = {"mean": values}
    elif values.ndim == 3:
        if values.shape[1] == 0:
            raise SersError(f"{path}: has no frames (shape {values.shape})")
        values = values.astype(np.float32, copy=False)
        pooled = {"mean": values.mean(axis=1), "std": values.std(axis=1)}
    else:
        raise SersError(f"{path}: has shape {values.shape}; expected (layers, dim) pooled features or "
                        f"(layers, frames, dim) hidden states")
    return {stat: check_features(pooled[stat][:, None], "features", [path.stem], path)[:, 0] for stat in pool_stats}


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            import torch

            values = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(values, (list, tuple)):  # s3prl: one tensor per layer
                values = torch.stack([torch.as_tensor(v) for v in values])
            if not isinstance(values, torch.Tensor):
                raise SersError(f"{path}: holds a {type(values).__name__}; expected a tensor or a list of tensors")
            values = values.float().numpy()
    except SersError:
        raise
    except Exception as exc:
        raise SersError(f"{path}: not a readable array ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") \
            from None
    if values.dtype.kind not in "fiu":
        raise SersError(f"{path}: holds {values.dtype} values; features must be numbers")
    return values


def _manifest_columns(manifest_rows, ids) -> dict:
    if manifest_rows is None:
        return {}
    by_id = {u.id: u for u in manifest_rows}
    missing = [uid for uid in ids if uid not in by_id]
    if missing:
        raise SersError(f"the manifest has no row for {len(missing)} feature files ({', '.join(map(repr, missing[:5]))}); "
                        f"ids are the audio file names without suffix unless an 'id' column gives them")
    return {name: [getattr(by_id[uid], name, "") for uid in ids] for name in TEXT_COLUMNS}


def settle_text(columns: dict, split: str | None, where, log=None) -> dict:
    """The rules `sers extract` applies to its corpora (sers.fields), on imported columns: ``split``
    (``--split``) where a row has none, another one refused; languages as ISO codes, what was
    written kept as ``language_original`` (an export's own ``language_original`` is kept)."""
    n = len(columns["id"])
    columns = dict(columns)
    written = [original or language for language, original in
               zip(columns.get("language", [""] * n), columns.get("language_original", [""] * n))]
    splits, codes, originals = settle(columns["id"], columns.get("split", [""] * n), written, split, where, log)
    columns["split"] = splits
    if "language" in columns:
        columns["language"], columns["language_original"] = codes, originals
    return columns


def _refuse_existing(out_path, overwrite: bool) -> None:
    if Path(out_path).exists() and not overwrite:
        raise SersError(f"{out_path} already exists; pass --overwrite to replace it")


# -- out ----------------------------------------------------------------------------------------

def export(cache, out_path, *, split=None, layers=None, overwrite: bool = False, format=None) -> ExportResult:
    """The good rows of a cache as ``out.npz`` (``pooled_<stat>`` (L, N, D), the utterance
    columns, ``layers`` and ``layout``: what :func:`import_npz` reads) or ``out.parquet`` (one row per utterance, one
    list column ``<stat>_layer_<l>`` per layer), or with ``format="hf-datasets"`` a folder that
    ``datasets.load_from_disk`` opens (the Parquet file's columns, as one Dataset). ``format`` (one of
    EXPORT_FORMATS) is told by the suffix when None. An existing output is kept unless ``overwrite``;
    it appears only once written whole."""
    out_path = Path(out_path)
    if format is not None and format not in EXPORT_FORMATS:
        raise SersError(f"unknown export format {format!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    format = format or {".npz": "npz", ".parquet": "parquet"}.get(out_path.suffix)
    if format is None:
        raise SersError(f"{out_path}: export to a .npz or .parquet file, or a datasets folder with --format "
                        "hf-datasets")
    _refuse_existing(out_path, overwrite)
    rows = cache.rows(split)
    layers = list(range(cache.num_layers)) if layers is None else [int(layer) for layer in layers]
    columns = {name: cache.utterances[name][rows] for name in ("id",) + TEXT_COLUMNS + ("duration",)}
    columns = {name: values.astype(str) if values.dtype == object else values for name, values in columns.items()}
    pooled = {stat: cache.pooled_layers(layers, rows=rows, stat=stat) for stat in cache.pool_stats}
    if format == "npz":
        with atomic_path(out_path) as partial, open(partial, "wb") as handle:  # a file object: no suffix added
            np.savez(handle, **columns, **{f"pooled_{stat}": values for stat, values in pooled.items()},
                     layers=np.asarray(layers), layout=np.asarray("lnd"))
        return ExportResult(out_path, len(rows))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SersError("Parquet export needs pyarrow: pip install 'sers-lam[parquet]' (or export to .npz)") \
            from None
    table = {name: pa.array(values.tolist()) for name, values in columns.items()}
    for stat, values in pooled.items():
        for i, layer in enumerate(layers):
            table[f"{stat}_layer_{layer}"] = pa.FixedSizeListArray.from_arrays(
                pa.array(values[i].ravel()), cache.hidden_size)
    if format == "hf-datasets":
        _save_dataset(pa.table(table), out_path)
        return ExportResult(out_path, len(rows))
    with atomic_path(out_path) as partial:
        pq.write_table(pa.table(table), partial, compression="zstd")
    return ExportResult(out_path, len(rows))


def _save_dataset(table, out_path: Path) -> None:
    """``table`` as a ``save_to_disk`` folder: fixed-size float32 lists become List(float32, length=D)."""
    try:
        import datasets
    except ImportError:
        raise SersError("--format hf-datasets needs the datasets package: pip install 'sers-lam[hf-datasets]'") \
            from None
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the export's one line is the CLI's (and none with --quiet)
    try:
        with atomic_path(out_path) as partial:
            datasets.Dataset(table).save_to_disk(str(partial))
    finally:
        if shown:
            datasets.enable_progress_bars()
