"""Resuming `sers train`: which sweep a runs folder holds, which of its runs are done, one writer.

A runs folder holds one sweep. ``sweep.json`` records the sweep's resolved settings (the run
names with their ablations, seeds, λ list, anchors, estimator settings, splits, features, the
caches' identity and the sers version) and their sha256, written before the first run trains.
Rerunning the same command finds the same digest and resumes: every run folder that is whole
is read back instead of trained again, the others are trained, and then, as in an uninterrupted
sweep, the candidates are selected, every run is scored and results.csv/md and runs.csv are
rebuilt from the run folders. Another sweep into the same folder is refused, naming what
changed, unless ``--overwrite``. Beside the settings, sweep.json keeps the caller's ``record`` of the
latest call (the CLI's: each option's value, whether the command line, the --config file or the
default gave it, and the file's path and sha256); it is no part of the digest, so a sweep started
with --config resumes when the same values are typed instead.

A run folder is whole when it is at its final name: `_run_one` writes it under a temporary
name and renames it once its config.json, model.safetensors, predictions.csv and curves are
written. Its metrics.json comes later and is no part of it: the target test labels are read only
once every model is trained (candidates are chosen before any target label is read), so a killed
sweep may leave whole runs without metrics; the rerun scores them.

The folder's writer lock (``<out>.lock``, :mod:`sers.pipeline.output_lock`, as `sers extract` takes
for a cache) is held from the first check to the last table written: a second `sers train` into the same
folder, even with ``--overwrite``, is refused with one line naming the holder.
"""
from __future__ import annotations

import csv
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from sers import atomic, runs as run_schema
from sers.errors import SersError
from sers.jsonfile import read_json, shown
from sers.pipeline.output_lock import writer_lock  # noqa: F401 - train takes it from here

SWEEP = "sweep.json"
# What a whole run folder holds (curves.png is optional: --no-plots).
WHOLE = (run_schema.CONFIG, run_schema.WEIGHTS, run_schema.PREDICTIONS, run_schema.CURVES_CSV)
CHANGES_SHOWN = 3


def cache_identity(cache) -> dict:
    """What tells one cache's features from another's, wherever the cache is copied to: the model
    (weights digest, commit), the manifest digest, when it was laid out, and its rows."""
    return {"model": cache.model_description(), "manifest_digest": cache.manifest_digest,
            "created": cache.created, "utterances": int(len(cache.all_utterances))}


def sweep_settings(*, runs: dict, seeds, lambdas, anchor_specs, settings, splits, stat, align, select,
                   speaker_standardised: bool, src, tgt, version: str) -> dict:
    """What makes two sweeps the same: everything that changes a run's result or the set of runs; not
    --jobs, --backend, --no-plots or the progress bar, and not the caches' paths (a cache copied
    elsewhere holds the same features)."""
    from dataclasses import asdict

    anchors = [{"layers": spec["layers"], "groups": spec["groups"], "target_labels": spec["target_labels"],
                "file": Path(spec["file"]).name if spec["file"] else None} for spec in anchor_specs]
    return {"runs": {name: list(method_align) for name, method_align in runs.items()}, "seeds": list(seeds),
            "lambdas": list(lambdas), "anchors": anchors, "settings": asdict(settings), "splits": asdict(splits),
            "stat": stat, "align": align, "select": select, "speaker_standardised": bool(speaker_standardised),
            "source": cache_identity(src), "target": cache_identity(tgt), "sers_version": version}


class Sweep:
    """The sweep a call of train() is about to run into ``out_dir``: refuses another sweep's folder
    (unless ``overwrite``), tells finished runs from the rest, records itself in sweep.json."""

    def __init__(self, out_dir, settings: dict, overwrite: bool, record: dict | None = None):
        self.out_dir = Path(out_dir)
        self.record = json.loads(json.dumps(record, default=str)) if record is not None else None
        self.settings = json.loads(json.dumps(settings, default=str))  # as sweep.json holds it
        self.digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        self.resuming = False
        self._replaced = earlier_outputs(self.out_dir) if overwrite else []
        if overwrite:  # whatever the folder holds, even a damaged sweep.json, is replaced
            return
        recorded, earlier = self._recorded(), earlier_outputs(self.out_dir)
        if recorded is None:
            if earlier:  # runs of an older sers, or of another tool: nothing says which sweep they are
                raise SersError(f"{self.out_dir} already holds runs; pass --overwrite to replace them, or choose "
                                "another -o (sers report reads every run in the folder)")
        elif recorded["digest"] != self.digest:
            changes = describe_changes(recorded["settings"], self.settings)
            raise SersError(f"{self.out_dir} holds the runs of another sweep ({changes}); pass --overwrite to replace "
                            "them, or choose another -o")
        else:
            self.resuming = True

    def _recorded(self) -> dict | None:
        path = self.out_dir / SWEEP
        if not path.exists():
            return None
        recorded = read_json(path, invalid="not a sweep.json")
        if not (isinstance(recorded, dict) and isinstance(recorded.get("digest"), str)
                and isinstance(recorded.get("settings"), dict)):
            raise SersError(f"{path}: not a sweep.json written by `sers train` (needs 'digest' and 'settings'); "
                            "pass --overwrite to train the folder again")
        return recorded

    def start(self) -> None:
        """Once every check has passed: remove what --overwrite replaces and what killed runs left
        half-written, then record the sweep (before any run, so that a kill at once still resumes)."""
        for path in self._replaced:
            _remove(path)
        for path in _leftovers(self.out_dir):
            _remove(path)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        recorded = {"digest": self.digest, "started": started, "settings": self.settings}
        if self.record is not None:
            recorded["invocation"] = self.record
        atomic.write_text(self.out_dir / SWEEP, json.dumps(recorded, indent=2) + "\n")

    def split(self, specs: list[dict], data: dict, log=None) -> tuple[list[dict], list[dict]]:
        """(the specs to train, the results of those whose folders are whole, read back from them)."""
        if not self.resuming:
            return list(specs), []
        todo, done = [], []
        for spec in specs:
            result, why_not = read_finished(spec, data)
            if result is not None:
                done.append(result)
                continue
            todo.append(spec)
            if why_not and log:
                log(f"note: {spec['run_dir']}: {why_not}; training it again")
        if log:
            rest = (f"training the other {len(todo)}" if todo else "scoring them and rebuilding the tables")
            log(f"resuming the sweep in {self.out_dir}: {len(done)} of {len(specs)} runs are finished; {rest}")
        return todo, done


def in_order(specs: list[dict], results: list[dict]) -> list[dict]:
    order = {(s["method"], s["seed"], s["candidate"]): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[(r["method"], r["seed"], r["candidate"])])


def describe_changes(before: dict, after: dict) -> str:
    """'seeds: [0, 1, 2] -> [0, 1]; settings.epochs: 30 -> 6' (the first few differences)."""
    old, new = _flat(before), _flat(after)
    changed = [key for key in dict.fromkeys([*old, *new]) if old.get(key, "(none)") != new.get(key, "(none)")]
    words = [f"{key}: {shown(old.get(key, '(none)'), 40)} -> {shown(new.get(key, '(none)'), 40)}"
             for key in changed[:CHANGES_SHOWN]]
    more = f"; and {len(changed) - CHANGES_SHOWN} more" if len(changed) > CHANGES_SHOWN else ""
    return "; ".join(words) + more if words else "settings of another sers version"


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


# -- the run folders ------------------------------------------------------------------------------

def run_folders(out_dir) -> list[Path]:
    """Every ``<method>/seed<k>`` folder that holds a run, or candidates of one."""
    out_dir = Path(out_dir)
    seeds = {p.parent for p in out_dir.glob(f"*/seed*/{run_schema.CONFIG}")}
    seeds |= {p.parents[2] for p in out_dir.glob(f"*/seed*/{run_schema.CANDIDATES}/*/{run_schema.CONFIG}")}
    return sorted(seeds)


def earlier_outputs(out_dir) -> list[Path]:
    """What a new sweep into ``out_dir`` replaces: run folders, the tables, sweep.json."""
    out_dir = Path(out_dir)
    tables = [out_dir / name for name in (run_schema.RESULTS_CSV, run_schema.RESULTS_MD, run_schema.RUNS_CSV, SWEEP)]
    return run_folders(out_dir) + [path for path in tables if path.exists()]


# The temporary names of sers.atomic (".<name>.partial-<pid>", ".<name>.old-<pid>") that a killed
# sweep can leave: of run folders and candidates, the tables, and the files written into runs.
_TEMPORARY = re.compile(r"^\..+\.(partial|old)-\d+$")


def _leftovers(out_dir: Path) -> list[Path]:
    """Temporary files and folders of this folder's own writers, never an evaluation's (`sers evaluate`
    writes RUN/evaluations/ under its own lock, maybe right now)."""
    places = [out_dir, *out_dir.glob("*"), *out_dir.glob("*/seed*"), *out_dir.glob(f"*/seed*/{run_schema.CANDIDATES}"),
              *out_dir.glob(f"*/seed*/{run_schema.CANDIDATES}/*")]
    return [path for place in places if place.is_dir() and not place.name.startswith(".")
            for path in place.iterdir() if _TEMPORARY.match(path.name)]


def read_finished(spec: dict, data: dict) -> tuple[dict | None, str | None]:
    """(the result `_run_one` returned for ``spec``, read back from its whole folder, None) or
    (None, why the folder cannot be used; None when there is no folder)."""
    folder = Path(spec["run_dir"])
    if not folder.is_dir():
        return None, None
    missing = [name for name in WHOLE if not (folder / name).is_file()]
    if missing:
        return None, f"no {missing[0]}"
    try:
        config = read_json(folder / run_schema.CONFIG)
    except SersError as exc:
        return None, str(exc).split(": ", 1)[-1]
    plain = json.loads(json.dumps(spec["params"], default=str))
    if not isinstance(config, dict) or (config.get("method"), config.get("seed"), config.get("estimator")) != (
            spec["method"], spec["seed"], plain):
        return None, "its config.json is of another run"
    scores = config.get("selection_scores")
    if spec["candidate"] and not isinstance(scores, dict):
        return None, "its config.json has no selection scores"
    best_epoch = config.get("best_epoch")
    if not isinstance(best_epoch, int) or isinstance(best_epoch, bool):
        return None, "its config.json has no best_epoch"
    read = _predictions(folder / run_schema.PREDICTIONS, data)
    if isinstance(read, str):
        return None, read
    classes, predicted = read
    return {"method": spec["method"], "seed": spec["seed"], "run_dir": spec["run_dir"], "best_epoch": best_epoch,
            "classes": classes, "candidate": spec["candidate"],
            "selection_scores": scores if spec["candidate"] else None, "predicted": predicted}, None


def _predictions(path: Path, data: dict):
    """(classes, {part: predicted labels}) from a run's predictions.csv, whose rows are the parts of
    ``data`` in the order `_run_one` writes them; or why they are not."""
    parts = ["source_dev", "target_test"] + (["target_dev"] if "target_dev" in data else [])
    expected = [str(uid) for name in parts for uid in data[f"ids_{name}"]]
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"its predictions.csv cannot be read ({exc})"
    header = rows[0] if rows else []
    if header[:4] != ["side", "split", "id", "predicted"] or not all(h.startswith("p_") for h in header[4:]):
        return "its predictions.csv has another header"
    if [row[2] for row in rows[1:] if len(row) > 3] != expected:
        return "its predictions.csv holds other utterances"
    labels = np.asarray([row[3] for row in rows[1:]])
    predicted, start = {}, 0
    for name in parts:
        n = len(data[f"ids_{name}"])
        predicted[name], start = labels[start:start + n], start + n
    return [h[2:] for h in header[4:]], predicted


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- writing errors that are not OSError ----------------------------------------------------------

# Rust's io::Error as safetensors words it: "... (os error 28)", or its Debug form "Os { code: 28, ...".
_RUST_IO = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def as_os_error(exc: BaseException, path) -> OSError | None:
    """safetensors reports a failed write (no space left, a read-only disk) as a SafetensorError
    ("Error while serializing: I/O error: No space left on device (os error 28)"): the OSError it
    stands for, so that the command says "no space left on the device" as for any other file."""
    found = _RUST_IO.search(str(exc))
    if found is None:
        return None
    code = int(found.group(1) or found.group(2))
    return OSError(code, os.strerror(code) if code in errno.errorcode else str(exc), str(path))
