"""The bad-input catalogue: inputs a new user gets wrong, and what sers must do with each.

Every case builds its input under a folder and returns the `sers` command line to run. Kinds:

* ``fail``: exit status 1, exactly one line on stderr (``error: ...``) naming ``names``;
* ``record``: exit status 0; the bad utterance is recorded as an error, named on the console;
* ``ok``: looks odd but is valid (BOM, CRLF, stereo, other sample rates): exit 0;
* ``usage``: a wrong option: exit status 2 (click's), exactly one line on stderr naming ``names``.

In every case there is no traceback, and the files in ``keeps`` (finished work that was
there before) are byte for byte unchanged afterwards. tests/test_bad_inputs.py runs the table
in-process; benchmarks/reliability.py runs it as real `sers` processes and counts.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

import sers.cache
from sers.cache.backends import open_backend
from sers.cache.lock import lock_path


@dataclass
class Built:
    argv: list[str]
    names: str                       # what the error line (or the failure list) must mention
    keeps: list[Path] = field(default_factory=list)


@dataclass
class Case:
    name: str
    group: str
    kind: str                        # fail | record | ok
    build: Callable[["Inputs", Path], Built]


@dataclass
class Inputs:
    """What the cases share: a tiny model folder."""
    model: Path


# -- builders of inputs ------------------------------------------------------------------------

def tone(path: Path, seconds: float = 0.6, rate: int = 16000, channels: int = 1, values=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * rate))
    wave = 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / rate) if values is None else values
    wave = np.asarray(wave, np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate,
             subtype="FLOAT" if values is not None else "PCM_16")
    return path


def manifest(folder: Path, rows: list[str], header: str = "path,label,split", name: str = "m.csv",
             newline: str = "\n", encoding: str = "utf-8") -> Path:
    """A manifest whose first data rows are two good files (so a run has work to keep)."""
    folder.mkdir(parents=True, exist_ok=True)
    tone(folder / "good0.wav")
    tone(folder / "good1.wav", 0.8)
    lines = [header, "good0.wav,N,train", "good1.wav,H,train"] + rows
    path = folder / name
    path.write_bytes(newline.join(lines).encode(encoding) + newline.encode())
    return path


def extract_argv(inputs: Inputs, manifest_path: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--model", str(inputs.model), "--manifest", str(manifest_path), "--out", str(out),
            "--workers", "0", "--quiet", *extra]


def cache(path: Path, n: int = 12, layers: int = 3, dim: int = 8, model_id: str = "tiny", nan_at=None,
          language: str = "en", labels="NHAS") -> Path:
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # src and tgt differ (their features too)
    sers.cache.from_arrays(path, rng.normal(size=(layers, n, dim)), {
        "id": [f"{language}{i}" for i in range(n)], "label": [labels[i % len(labels)] for i in range(n)],
        "split": ["train" if i < n - 4 else ("dev" if i < n - 2 else "test") for i in range(n)],
        "speaker": [f"s{i % 3}" for i in range(n)], "language": [language] * n, "duration": [1.0] * n},
        model_id=model_id, sample_rate=16000, frame_rate=50)
    if nan_at is not None:  # import refuses NaN: write it as a cache from elsewhere (or damage) would hold it
        backend = open_backend(path, "a")
        values = backend.array("pooled/mean")[:]
        values[nan_at] = np.nan
        backend.array("pooled/mean")[:] = values
        backend.close()
    return path


def unfinished_cache(path: Path) -> Path:
    writer = sers.cache.CacheWriter.create(path, {"id": ["a", "b"]}, num_layers=2, hidden_size=4)
    writer.close()
    return path


def digest(path: Path) -> str:
    """sha256 over a file, or every file of a folder (names and bytes)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode() + f.read_bytes())
    return h.hexdigest()


def trained_run(tmp: Path) -> Path:
    """A finished run folder of `sers train` (run in-process: a few seconds of CPU)."""
    from sers.pipeline.train import train

    src, tgt = cache(tmp / "src.zarr", 16), cache(tmp / "tgt.zarr", 16, language="zh")
    train(src, tgt, methods=["last"], seeds=[0], out_dir=tmp / "runs", epochs=1, plots=False, progress=False)
    return tmp / "runs" / "last" / "seed0"


# -- the cases -----------------------------------------------------------------------------------

def _manifest_fails(rows, header="path,label,split", names="m.csv", **options):
    def build(inputs, tmp):
        path = manifest(tmp / "audio", rows, header=header, **options)
        return Built(extract_argv(inputs, path, tmp / "c.zarr"), names if names != "m.csv" else str(path))
    return build


def _row_recorded(make_file, row_path: str, names: str | None = None, extra=()):
    """A manifest whose third row is ``row_path`` (made by ``make_file(folder)``): recorded, not fatal."""
    def build(inputs, tmp):
        folder = tmp / "audio"
        folder.mkdir(parents=True, exist_ok=True)
        make_file(folder)
        path = manifest(folder, [f"{row_path},A,train"])
        return Built(extract_argv(inputs, path, tmp / "c.zarr", *extra), names or Path(row_path).stem)
    return build


def _audio_ok(make_file, **manifest_options):
    def build(inputs, tmp):
        folder = tmp / "audio"
        folder.mkdir(parents=True, exist_ok=True)
        make_file(folder)
        return Built(extract_argv(inputs, manifest(folder, ["odd.wav,A,train"], **manifest_options), tmp / "c.zarr"),
                     "")
    return build


def _fifo(folder):
    os.mkfifo(folder / "pipe.wav")


def _non_utf8_name(inputs, tmp):
    folder = tmp / "audio"
    manifest(folder, [])
    path = folder / "m.jsonl"
    rows = [{"path": "good0.wav", "label": "N"}, {"path": "good1.wav", "label": "H"},
            {"path": "caf\udce9.wav", "id": "cafe", "label": "A"}]  # an undecodable byte, as os.listdir gives it
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return Built(extract_argv(inputs, path, tmp / "c.zarr"), "cafe")


def _bad_start_end(start, end):
    def build(inputs, tmp):
        folder = tmp / "audio"
        path = manifest(folder, [f"good0.wav,A,train,{start},{end},seg"], header="path,label,split,start,end,id")
        return Built(extract_argv(inputs, path, tmp / "c.zarr"), "seg")
    return build


def _extract_onto_finished(extra, names):
    """A finished cache, then a second command on it: refused, and the cache unchanged."""
    def build(inputs, tmp):
        from sers.cli import main

        path = manifest(tmp / "audio", [])
        out = tmp / "c.zarr"
        main.main(extract_argv(inputs, path, out), standalone_mode=False)
        argv = extract_argv(inputs, path, out, *extra)
        if "LOCKED" in extra:  # another writer holds the lock (this very process: alive)
            argv.remove("LOCKED")
            lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                  "started": "2026-01-01T00:00:00"}))
        return Built(argv, names(out) if callable(names) else names, keeps=[out])
    return build


def _similarity(make_target, names):
    def build(inputs, tmp):
        src = cache(tmp / "src.zarr")
        tgt = make_target(tmp)
        return Built(["similarity", str(src), str(tgt), "-o", str(tmp / "sim")], names, keeps=[src])
    return build


def _anchors(content: str, names: str, layers="anchors"):
    def build(inputs, tmp):
        src, tgt = cache(tmp / "src.zarr"), cache(tmp / "tgt.zarr", language="zh")
        path = tmp / "anchors.json"
        path.write_text(content)
        return Built(["train", "--source", str(src), "--target", str(tgt), "--method", "lam", "--anchors",
                      str(path) if layers == "anchors" else layers, "--epochs", "1", "--seeds", "0",
                      "-o", str(tmp / "runs"), "--quiet", "--no-plots"], names)
    return build


def _damaged_run(file_name: str, content: bytes):
    def build(inputs, tmp):
        run = trained_run(tmp)
        (run / file_name).write_bytes(content)
        return Built(["evaluate", str(run), str(tmp / "tgt.zarr")], str(run / file_name),
                     keeps=[tmp / "tgt.zarr"])
    return build


def _npz(arrays: dict, names: str):
    def build(inputs, tmp):
        path = tmp / "f.npz"
        np.savez(path, **arrays)
        return Built(["cache", "import", str(path), "-o", str(tmp / "c.zarr"), "--model-id", "x"], names)
    return build


def _merge_into_input(inputs, tmp):
    a, b = cache(tmp / "a.zarr"), cache(tmp / "b.zarr")
    sers.cache.from_arrays(b, np.ones((3, 2, 8)), {"id": ["x0", "x1"]}, model_id="tiny")
    return Built(["cache", "merge", str(a), str(b), "-o", str(a), "--overwrite"], str(a), keeps=[a, b])


CASES = [
    # manifests
    Case("no path column", "manifest", "fail", _manifest_fails([], header="recording,label,split", names="no 'path' column")),
    Case("duplicate column", "manifest", "fail", _manifest_fails([], header="path,label,label", names="'label'")),
    Case("duplicate id", "manifest", "fail",
         _manifest_fails(["good0.wav,A,train"], names="duplicate id 'good0'")),
    Case("not UTF-8", "manifest", "fail",
         _manifest_fails(["caf\u00e9.wav,A,train"], encoding="latin-1", names="not UTF-8")),
    Case("no data rows", "manifest", "fail", lambda i, t: Built(
        extract_argv(i, _write(t / "m.csv", "path,label\n"), t / "c.zarr"), "no utterances")),
    Case("manifest is a folder", "manifest", "fail", lambda i, t: Built(
        extract_argv(i, _mkdir(t / "corpus"), t / "c.zarr"), "is a folder")),
    Case("too many values on a row", "manifest", "fail",
         _manifest_fails(["good0.wav,A,train,extra"], names="line 4")),
    Case("bad JSON line", "manifest", "fail", lambda i, t: Built(
        extract_argv(i, _write(t / "m.jsonl", '{"path": "a.wav"}\n{"path": \n'), t / "c.zarr"), "line 2")),
    Case("end before start", "manifest", "fail",
         _manifest_fails(["good0.wav,A,train,0.5,0.2"], header="path,label,split,start,end", names="line 4")),
    Case("start not a number", "manifest", "fail",
         _manifest_fails(["good0.wav,A,train,abc,"], header="path,label,split,start,end", names="line 4")),
    Case("BOM", "manifest", "ok", _audio_ok(lambda f: tone(f / "odd.wav"), encoding="utf-8-sig")),
    Case("CRLF line ends", "manifest", "ok", _audio_ok(lambda f: tone(f / "odd.wav"), newline="\r\n")),
    Case("segment outside the audio", "manifest", "record", _bad_start_end(5.0, 6.0)),
    Case("segment ends past the audio", "manifest", "record", _bad_start_end(0.1, 3.0)),
    Case("missing audio file", "manifest", "record", _row_recorded(lambda f: None, "gone.wav")),
    Case("a folder as audio", "manifest", "record", _row_recorded(lambda f: (f / "dir.wav").mkdir(), "dir.wav")),
    Case("not audio (text bytes)", "manifest", "record",
         _row_recorded(lambda f: (f / "text.wav").write_text("hello"), "text.wav")),
    Case("a FIFO (would block)", "manifest", "record", _row_recorded(_fifo, "pipe.wav")),
    Case("file name not UTF-8", "manifest", "record", _non_utf8_name),
    Case("target label unseen in source", "manifest", "fail", lambda i, t: Built(
        ["train", "--source", str(cache(t / "s.zarr", 16)), "--target",
         str(cache(t / "t.zarr", 16, language="zh", labels="XN")), "--method", "last", "--target-dev", "dev",
         "--epochs", "1", "--seeds", "0", "-o", str(t / "runs"), "--quiet"], "'X'")),
    # audio
    Case("empty file (0 bytes)", "audio", "record", _row_recorded(lambda f: (f / "empty.wav").write_bytes(b""),
                                                                  "empty.wav")),
    Case("0 samples", "audio", "record",
         _row_recorded(lambda f: sf.write(f / "zero.wav", np.zeros(0, np.float32), 16000), "zero.wav")),
    Case("10 ms", "audio", "record", _row_recorded(lambda f: tone(f / "short.wav", 0.01), "short.wav")),
    Case("NaN samples", "audio", "record",
         _row_recorded(lambda f: tone(f / "nan.wav", values=np.full(8000, np.nan)), "nan")),
    Case("20 minutes", "audio", "record",
         _row_recorded(lambda f: sf.write(f / "long.wav", np.zeros(20 * 60 * 8000, np.int16), 8000), "long.wav")),
    Case("stereo", "audio", "ok", _audio_ok(lambda f: tone(f / "odd.wav", channels=2))),
    Case("8 kHz", "audio", "ok", _audio_ok(lambda f: tone(f / "odd.wav", rate=8000))),
    Case("44.1 kHz", "audio", "ok", _audio_ok(lambda f: tone(f / "odd.wav", rate=44100))),
    Case("48 kHz", "audio", "ok", _audio_ok(lambda f: tone(f / "odd.wav", rate=48000))),
    # caches
    Case("caches of other models", "cache", "fail", _similarity(
        lambda t: cache(t / "tgt.zarr", model_id="other"), "model_id")),
    Case("caches with other layer counts", "cache", "fail", _similarity(
        lambda t: cache(t / "tgt.zarr", layers=4), "num_layers")),
    Case("unfinished cache", "cache", "fail", _similarity(
        lambda t: unfinished_cache(t / "tgt.zarr"), "not finished")),
    Case("not a cache", "cache", "fail", _similarity(lambda t: _mkdir(t / "tgt.zarr"), "tgt.zarr")),
    Case("NaN features", "cache", "fail", _similarity(
        lambda t: cache(t / "tgt.zarr", language="zh", nan_at=(1, 3)), "zh3")),
    Case("resume with other settings", "cache", "fail", _extract_onto_finished(
        ("--pool", "mean,std"), "pool_stats")),
    Case("second writer", "cache", "fail", _extract_onto_finished(("LOCKED",), "being written by another")),
    Case("--overwrite while a writer runs", "cache", "fail", _extract_onto_finished(
        ("LOCKED", "--overwrite"), "being written by another")),
    Case("merge into one of its inputs", "cache", "fail", _merge_into_input),
    Case("damaged .h5 (killed while created)", "cache", "fail", lambda i, t: Built(
        extract_argv(i, manifest(t / "audio", []), _write(t / "c.h5", "\x89HDF\r\n")), "--overwrite")),
    # anchors.json
    Case("anchors.json not JSON", "anchors", "fail", _anchors('{"layers": [1,', "anchors.json")),
    Case("anchors.json holding 5", "anchors", "fail", _anchors("5", "anchors.json")),
    Case("anchors.json holding null", "anchors", "fail", _anchors("null", "anchors.json")),
    Case("anchor layer out of range", "anchors", "fail", _anchors('{"layers": [1, 9]}', "9")),
    # run folders
    Case("run config.json damaged", "runs", "fail", _damaged_run("config.json", b'{"method": ')),
    Case("run model.safetensors damaged", "runs", "fail", _damaged_run("model.safetensors", b"\x00" * 40)),
    Case("no runs in the folder", "runs", "fail", lambda i, t: Built(
        ["report", str(_mkdir(t / "runs")), "-o", str(t / "r.html")], "no run folders")),
    # outputs that cannot be written
    Case("similarity -o under a file", "outputs", "fail", lambda i, t: Built(
        ["similarity", str(cache(t / "s.zarr")), str(cache(t / "t.zarr")), "-o", str(_write(t / "f.txt", "") / "sim")],
        "f.txt")),
    Case("extract --out under a file", "outputs", "fail", lambda i, t: Built(
        extract_argv(i, manifest(t / "audio", []), _write(t / "f.txt", "") / "c.zarr"), "f.txt")),
    # npz imports (the ones sers cache import must refuse; more in h-eco's import tests)
    Case("npz without pooled", "npz", "fail", _npz({"id": np.array(["a"])}, "'pooled'")),
    Case("npz without ids", "npz", "fail", _npz({"pooled": np.zeros((2, 1, 4))}, "'id'")),
]


# -- strict JSON inputs (issue 24, item 5): a loose reading would train or rank other layers ----------

SIMILARITY = {"layers": [0, 1, 2], "measures": {"coral": {"direction": "lower", "values": [0.3, 0.1, 0.2]}}}


def _similarity_file(change, names: str):
    """`sers anchor` on a similarity.json edited by ``change`` (a dict of fields to replace)."""
    def build(inputs, tmp):
        path = _write(tmp / "sim" / "similarity.json", json.dumps({**SIMILARITY, **change}))
        return Built(["anchor", str(path), "-o", str(tmp / "anchors.json")], names, keeps=[path])
    return build


def _damaged_config(change, names: str):
    """`sers evaluate` of a finished run whose config.json was edited by ``change``."""
    def build(inputs, tmp):
        run = trained_run(tmp)
        config = json.loads((run / "config.json").read_text())
        change(config)
        (run / "config.json").write_text(json.dumps(config))
        return Built(["evaluate", str(run), str(tmp / "tgt.zarr")], names, keeps=[tmp / "tgt.zarr"])
    return build


CASES += [
    Case("anchor layer 1.5", "anchors", "fail", _anchors('{"layers": [1.5]}', "'layers[0]' must be a layer number")),
    Case("anchor layer 0.9", "anchors", "fail", _anchors('{"layers": [0.9, 2]}', "'layers[0]'")),
    Case("anchor layer true", "anchors", "fail", _anchors('{"layers": [true]}', "not true")),
    Case("anchor layer twice", "anchors", "fail", _anchors('{"layers": [1, 1]}', "names layer 1 twice")),
    Case("anchor layers an object", "anchors", "fail", _anchors('{"layers": {"a": 1}}', "field 'layers'")),
    Case("anchor layer as a string", "anchors", "fail", _anchors('{"layers": ["1"]}', "'layers[0]'")),
    Case("anchor groups overlap", "anchors", "fail", _anchors('{"groups": [[1, 2], [2]]}', "field 'groups'")),
    Case("anchor layers not the groups' union", "anchors", "fail",
         _anchors('{"layers": [1], "groups": [[1, 2]]}', "not the union of field 'groups'")),
    Case("anchor score a string", "anchors", "fail",
         _anchors('{"layers": [1], "scores": {"1": "0.5"}}', "field 'scores.1'")),
    Case("--anchors 1,1", "anchors", "fail", _anchors("", "--anchors: field 'layers' names layer 1 twice", "1,1")),
    Case("similarity: 4 layers, 3 scores", "similarity", "fail",
         _similarity_file({"layers": [0, 1, 2, 3]}, "'measures.coral.values' has 3 entries but there are 4 layers")),
    Case("similarity: scores as strings", "similarity", "fail", _similarity_file(
        {"measures": {"coral": {"direction": "lower", "values": ["0.3", "0.1", "0.2"]}}},
        "'measures.coral.values[0]' must be a number or null")),
    Case("similarity: layers an object", "similarity", "fail", _similarity_file({"layers": {"a": 1}}, "'layers'")),
    Case("similarity: layer 1.5", "similarity", "fail", _similarity_file({"layers": [0, 1.5, 2]}, "'layers[1]'")),
    Case("similarity: a layer twice", "similarity", "fail", _similarity_file({"layers": [0, 1, 1]}, "layer 1 twice")),
    Case("similarity: unknown direction", "similarity", "fail", _similarity_file(
        {"measures": {"coral": {"direction": "up", "values": [0.3, 0.1, 0.2]}}}, "'measures.coral.direction'")),
    Case("run config: layers 0.5", "runs", "fail",
         _damaged_config(lambda c: c.update(layers=[0.5]), "config.json: field 'layers[0]'")),
    Case("run config: num_layers a string", "runs", "fail", _damaged_config(
        lambda c: c["data"]["source"]["model"].update(num_layers="3"), "'data.source.model.num_layers'")),
    Case("run config: no model", "runs", "fail",
         _damaged_config(lambda c: c["data"]["source"].pop("model"), "'data.source.model'")),
]


# -- limits and damaged inputs that were "unexpected ... (a bug in sers)" (issue 24, item 7) ---------

def _train(*options: str, names: str):
    """`sers train` on two small caches with ``options``."""
    def build(inputs, tmp):
        src, tgt = cache(tmp / "src.zarr", 16), cache(tmp / "tgt.zarr", 16, language="zh")
        return Built(["train", "--source", str(src), "--target", str(tgt), "--method", "last", "--epochs", "1",
                      "-o", str(tmp / "runs"), "--quiet", "--no-plots", *options], names)
    return build


def _pickled_model(inputs, tmp):
    """The tiny model with its weights as a pytorch_model.bin that holds an object besides the tensors
    (what a tampered or careless checkpoint holds; torch's weights_only loading refuses it)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp / "pickled-model"
    shutil.copytree(inputs.model, folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**weights, "extra": _NotATensor()}, folder / "pytorch_model.bin")
    return Built(extract_argv(Inputs(model=folder), manifest(tmp / "audio", []), tmp / "c.zarr"), "pickled weights")


class _NotATensor:
    def __reduce__(self):
        return (os.getpid, ())  # harmless if run; weights_only unpickling refuses it either way


def _truncated_wav(folder: Path) -> None:
    """A WAV whose header announces 3 s and whose file holds 1 s (a copy cut short)."""
    whole = tone(folder / "whole.wav", 3.0).read_bytes()
    (folder / "cut.wav").write_bytes(whole[:44 + 2 * 16000])
    (folder / "whole.wav").unlink()


CASES += [
    Case("--seeds 0-100000000", "limits", "usage", _train("--seeds", "0-100000000", names="at most 2000")),
    Case("--seeds 5-3", "limits", "usage", _train("--seeds", "5-3", names="ends before it starts")),
    Case("--seeds 0,0", "limits", "fail", _train("--seeds", "0,0", names="seed 0 is given twice")),
    Case("--jobs 1000", "limits", "fail", _train("--jobs", "1000", names="--jobs 1000: at most")),
    Case("--lambda 1,1", "limits", "fail", _train("--method", "coral", "--lambda", "1,1", names="given twice")),
    Case("--lambda nan", "limits", "fail", _train("--method", "coral", "--lambda", "nan", names="nan")),
    Case("65 candidates", "limits", "fail", _train(
        "--method", "coral", "--lambda", ",".join(str(i) for i in range(65)), names="at most 64 per method")),
    Case("unknown option", "limits", "usage", _train("--epoch", "3", names="No such option")),
    Case("pickled model weights", "limits", "fail", _pickled_model),
    Case("WAV shorter than its header", "audio", "record",
         _row_recorded(_truncated_wav, "cut.wav", names="cut")),
]


# -- damaged caches: lost and damaged chunks (issue 24 item 4; the cache's own block) ---------------

def damage_chunk(path: Path, array: str, how: str = "delete") -> np.ndarray:
    """Delete (zarr), truncate (zarr) or flip one byte of (zarr, HDF5) one chunk of ``array``: the second
    chunk of layer 1's rows (``pooled/...``) or the second chunk of frames (``frames/...``), or the first
    when there is one. Returns the rows of utterances/ whose features the chunk held."""
    backend = open_backend(path, "r")
    values = backend.array(array)
    chunks, shape = tuple(values.chunks), tuple(values.shape)
    offsets, lengths = backend.array("utterances/frame_offset")[:], backend.array("utterances/n_frames")[:]
    backend.close()
    axis = 1 if array.startswith("pooled/") else 0
    index = 1 if shape[axis] > chunks[axis] else 0
    lo, hi = index * chunks[axis], min((index + 1) * chunks[axis], shape[axis])
    coords = (1, index, 0) if axis else (index, 0)
    rows = np.arange(lo, hi) if axis else np.flatnonzero((lengths > 0) & (offsets < hi) & (offsets + lengths > lo))
    if path.suffix == ".zarr":
        file = path.joinpath(array, "c", *map(str, coords))
        data = file.read_bytes()
        if how == "delete":
            file.unlink()
        elif how == "truncate":
            file.write_bytes(data[:len(data) // 2])
        else:
            file.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
        return rows
    import h5py

    with h5py.File(path, "r") as f:  # where libhdf5 stored the chunk in the file
        info = f[array].id.get_chunk_info_by_coord(tuple(c * n for c, n in zip(coords, chunks)))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + info.size // 2)
        byte = handle.read(1)
        handle.seek(info.byte_offset + info.size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return rows


def _damaged_target(suffix: str, how: str):
    def make(tmp):
        path = cache(tmp / f"tgt{suffix}", language="zh")
        damage_chunk(path, "pooled/mean", how)
        return path
    return make


CASES += [
    Case("a deleted zarr chunk", "cache", "fail", _similarity(_damaged_target(".zarr", "delete"),
                                                              "pooled/mean: 1 chunk(s) missing")),
    Case("a truncated zarr chunk", "cache", "fail", _similarity(_damaged_target(".zarr", "truncate"),
                                                                "pooled/mean: 1 chunk(s) cannot be decoded")),
    Case("a damaged HDF5 chunk", "cache", "fail", _similarity(_damaged_target(".h5", "flip"),
                                                              "pooled/mean: 1 chunk(s) cannot be decoded")),
]


# -- one writer per stage-2 output, one sweep per runs folder (issue 24, items 3 and 6) ---------------

def _held_by_another(path: Path) -> None:
    """The writer lock of ``path`` held by a live sers command (this very process: alive)."""
    lock_path(path).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                           "started": "2026-01-01T00:00:00"}))


def _second_writer(command: str, *extra: str):
    """`sers train`, `similarity` or `evaluate` into an output another sers command is writing."""
    def build(inputs, tmp):
        if command == "evaluate":
            run = trained_run(tmp)
            out = tmp / "ev"
            argv = ["evaluate", str(run), str(tmp / "tgt.zarr"), "-o", str(out)]
        else:
            src, tgt = cache(tmp / "src.zarr", 16), cache(tmp / "tgt.zarr", 16, language="zh")
            out = tmp / "out"
            argv = (["similarity", str(src), str(tgt), "-o", str(out)] if command == "similarity" else
                    ["train", "--source", str(src), "--target", str(tgt), "--method", "last", "--epochs", "1",
                     "--seeds", "0", "-o", str(out), "--quiet", "--no-plots"])
        _held_by_another(out)
        return Built(argv + list(extra), f"{out} is being written by another sers command (pid {os.getpid()} on")
    return build


def _another_sweep(inputs, tmp):
    """A finished sweep, then another one (other seeds) into the same folder: refused, runs kept."""
    from sers.cli import main

    src, tgt = cache(tmp / "src.zarr", 16), cache(tmp / "tgt.zarr", 16, language="zh")
    argv = ["train", "--source", str(src), "--target", str(tgt), "--method", "last", "--epochs", "1", "-o",
            str(tmp / "runs"), "--quiet", "--no-plots"]
    main.main(argv + ["--seeds", "0,1"], standalone_mode=False)
    return Built(argv + ["--seeds", "0"], "holds the runs of another sweep (seeds: [0, 1] -> [0])",
                 keeps=[tmp / "runs"])


CASES += [
    Case("second sers train into one -o", "outputs", "fail", _second_writer("train")),
    Case("sers train --overwrite while another writes", "outputs", "fail", _second_writer("train", "--overwrite")),
    Case("second sers similarity into one -o", "outputs", "fail", _second_writer("similarity")),
    Case("second sers evaluate into one -o", "outputs", "fail", _second_writer("evaluate", "--overwrite")),
    Case("another sweep into a runs folder", "outputs", "fail", _another_sweep),
]

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
