"""Resuming `sers train` (sers.pipeline.train_resume) and one writer per runs folder."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import sers.pipeline.train as train_module
from bad_inputs import cache
from sers import runs as run_schema
from sers.cli import main
from sers.errors import SersError
from sers.pipeline.train import train
from sers.pipeline.train_resume import SWEEP, WHOLE

ROOT = Path(__file__).resolve().parent.parent
# Two candidates (λ 0 and 1) per aligning method and seed: 2 last + 2 anchors-only + 4 lam candidates.
SWEEP_OPTIONS = dict(methods=["last", "lam"], anchors=[1, 2], seeds=[0, 1], lambda_=[0.0, 1.0], epochs=2, hidden=16,
                     plots=False, progress=False)
RUNS = 8
FIT_AND_WRITE = train_module._fit_and_write  # the real one, whatever a test patches in
CLI_OPTIONS = ["--method", "last,lam", "--anchors", "1,2", "--seeds", "0,1", "--lambda", "0,1", "--epochs", "2",
               "--hidden", "16", "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("caches")
    return cache(folder / "src.zarr", 40), cache(folder / "tgt.zarr", 40, language="zh")


@pytest.fixture(scope="module")
def reference(caches, tmp_path_factory):
    """The same sweep, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "runs"
    return out, train(*caches, out_dir=out, **SWEEP_OPTIONS)


class Trainings:
    """Counts the runs trained (train's _fit_and_write), and raises in the one after ``stop_after``
    as a kill would stop the sweep there."""

    def __init__(self, monkeypatch, stop_after=None):
        self.count, self.stop_after = 0, stop_after

        def counted(spec, data, run_dir):
            if self.stop_after is not None and self.count >= self.stop_after:
                raise RuntimeError("killed")
            self.count += 1
            return FIT_AND_WRITE(spec, data, run_dir)
        monkeypatch.setattr(train_module, "_fit_and_write", counted)


def _same_outputs(out: Path, reference: Path) -> None:
    """Every run file and table the same as the uninterrupted sweep's (runs.csv up to the folder)."""
    assert (out / run_schema.RESULTS_CSV).read_bytes() == (reference / run_schema.RESULTS_CSV).read_bytes()
    assert (out / run_schema.RESULTS_MD).read_bytes() == (reference / run_schema.RESULTS_MD).read_bytes()
    rows = [list(csv.reader(open(folder / run_schema.RUNS_CSV))) for folder in (out, reference)]
    assert [r[:-1] for r in rows[0]] == [r[:-1] for r in rows[1]]
    assert [r[-1].replace(str(out), "") for r in rows[0][1:]] == [r[-1].replace(str(reference), "") for r in rows[1][1:]]
    files = sorted(p.relative_to(reference) for p in reference.glob("*/seed*/**/*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.glob("*/seed*/**/*") if p.is_file())
    for name in files:
        if name.name == run_schema.CURVES_CSV:  # the same curves; each epoch's seconds are its own
            assert _untimed(out / name) == _untimed(reference / name), name
        elif name.name == run_schema.CONFIG:  # the same run; the command line is recorded as typed
            assert _commandless(out / name) == _commandless(reference / name), name
        else:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _commandless(config: Path) -> dict:
    return {k: v for k, v in json.loads(config.read_text()).items() if k != "command"}


def _untimed(curves: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(curves))]


def test_a_sweep_stopped_midway_resumes_training_only_the_missing_runs(caches, reference, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    Trainings(monkeypatch, stop_after=3)
    with pytest.raises(RuntimeError, match="killed"):
        train(*caches, out_dir=out, **SWEEP_OPTIONS)
    finished = sorted(p.parent for p in out.rglob(run_schema.CONFIG))
    assert len(finished) == 3
    for folder in finished:  # a run folder at its final name is whole; its metrics come after all training
        assert all((folder / name).is_file() for name in WHOLE) and not (folder / run_schema.METRICS).exists()
    weights = {folder: (folder / run_schema.WEIGHTS).stat().st_mtime_ns for folder in finished}
    leftover = out / "lam" / ".seed1.partial-999999"  # what a SIGKILL leaves mid-run
    (leftover / "candidates").mkdir(parents=True)
    (leftover / run_schema.CONFIG).write_text("{}")

    trainings, lines = Trainings(monkeypatch), []
    table = train(*caches, out_dir=out, log=lines.append, **SWEEP_OPTIONS)
    assert trainings.count == RUNS - 3
    assert f"resuming the sweep in {out}: 3 of {RUNS} runs are finished; training the other {RUNS - 3}" in lines
    assert {folder: (folder / run_schema.WEIGHTS).stat().st_mtime_ns for folder in finished} == weights
    assert not leftover.exists()
    assert list(table) == list(reference[1])
    _same_outputs(out, reference[0])

    again = Trainings(monkeypatch)
    assert list(train(*caches, out_dir=out, **SWEEP_OPTIONS)) == list(reference[1]) and again.count == 0
    _same_outputs(out, reference[0])


def test_a_run_folder_that_is_not_whole_is_trained_again(caches, reference, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    train(*caches, out_dir=out, **SWEEP_OPTIONS)
    (out / "last" / "seed1" / run_schema.PREDICTIONS).write_text("side,split,id,predicted,p_A\n")  # damaged by hand
    trainings, lines = Trainings(monkeypatch), []
    train(*caches, out_dir=out, log=lines.append, **SWEEP_OPTIONS)
    assert trainings.count == 1
    assert f"note: {out / 'last' / 'seed1'}: its predictions.csv holds other utterances; training it again" in lines
    _same_outputs(out, reference[0])


def test_another_sweep_into_the_folder_is_refused_naming_what_changed(caches, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    train(*caches, out_dir=out, **SWEEP_OPTIONS)
    before = (out / SWEEP).read_bytes()
    with pytest.raises(SersError, match=r"holds the runs of another sweep \(seeds: \[0, 1\] -> \[0\]\); pass "
                                        r"--overwrite to replace them"):
        train(*caches, out_dir=out, **{**SWEEP_OPTIONS, "seeds": [0]})
    with pytest.raises(SersError, match=r"\(settings.hidden: 16 -> 8; settings.epochs: 2 -> 3\)"):
        train(*caches, out_dir=out, **{**SWEEP_OPTIONS, "epochs": 3, "hidden": 8})
    assert (out / SWEEP).read_bytes() == before  # a refusal changes nothing
    train(*caches, out_dir=out, overwrite=True, **{**SWEEP_OPTIONS, "seeds": [0]})
    assert sorted(p.name for p in (out / "lam").iterdir()) == ["seed0"]
    assert json.loads((out / SWEEP).read_text())["settings"]["seeds"] == [0]


def test_runs_without_a_sweep_json_are_refused_as_before(caches, tmp_path):
    out = tmp_path / "runs"
    train(*caches, out_dir=out, **{**SWEEP_OPTIONS, "methods": ["last"], "seeds": [0]})
    (out / SWEEP).unlink()  # runs of an older sers
    with pytest.raises(SersError, match="already holds runs; pass --overwrite"):
        train(*caches, out_dir=out, **{**SWEEP_OPTIONS, "methods": ["last"], "seeds": [0]})


def test_a_full_disk_while_saving_weights_is_the_no_space_line(caches, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from sers.classifiers.estimator import LayerAnchoringClassifier

    def full(self, path):  # what safetensors raises on a full disk (seen on a 64 kB tmpfs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(LayerAnchoringClassifier, "save", full)
    monkeypatch.delenv("SERS_DEBUG", raising=False)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--source", str(caches[0]), "--target", str(caches[1]),
                                       "--method", "last", "--seeds", "0", "--epochs", "1", "-o", str(out),
                                       "--quiet", "--no-plots"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no space left on the device while writing or reading {out / 'last' / 'seed0' / 'model.safetensors'}"
        "; finished outputs are kept: fix that and rerun the command")
    assert not (out / "last" / "seed0").exists() and not list((out / "last").iterdir())


def test_a_write_that_fails_on_flush_names_the_run_folder(caches, tmp_path, monkeypatch):
    import errno

    def full(*args):  # what a full disk gives when a buffered write is flushed: no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_module, "_write_curves", full)
    with pytest.raises(OSError) as failed:
        train(*caches, out_dir=tmp_path / "runs", **{**SWEEP_OPTIONS, "methods": ["last"], "seeds": [0]})
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(tmp_path / "runs" / "last" / "seed0")


# A `sers train` that stops for good in its third run, once two are whole: the test kills it there.
HOLD = """
import sys, time
from pathlib import Path
import sers.pipeline.train as t
real, done = t._fit_and_write, []
def held(spec, data, run_dir):
    if len(done) == 2:
        Path(sys.argv[1]).write_text("2 runs done")
        time.sleep(600)
    done.append(spec)
    return real(spec, data, run_dir)
t._fit_and_write = held
from sers.cli import main
main(sys.argv[2:], prog_name="sers")
"""


def test_a_second_train_is_refused_naming_the_holder_and_a_killed_one_resumes(caches, reference, tmp_path,
                                                                             monkeypatch, capfd):
    out, marker = tmp_path / "runs", tmp_path / "marker"
    argv = ["train", "--source", str(caches[0]), "--target", str(caches[1]), *CLI_OPTIONS, "-o", str(out)]
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(marker), *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first sers train did not get through two runs"
            time.sleep(0.2)
        for extra in ([], ["--overwrite"]):
            second = CliRunner().invoke(main, argv + extra)
            lines = [line for line in second.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("error")]
            assert second.exit_code == 1 and errors == lines[-1:], second.stderr  # log lines, then one error line
            assert errors[0].startswith(f"error: {out} is being written by another sers command (pid {first.pid} on "
                                        f"{socket.gethostname()}, started ")
        assert len(list(out.rglob(run_schema.CONFIG))) == 2
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert list(out.glob("*/.seed*.partial-*"))  # the killed run's half-written folder

    trainings = Trainings(monkeypatch)
    capfd.readouterr()
    table = train(*caches, out_dir=out, **SWEEP_OPTIONS)
    assert "took over the writer lock of pid" in capfd.readouterr().err
    assert trainings.count == RUNS - 2 and list(table) == list(reference[1])
    _same_outputs(out, reference[0])
    assert not list(out.glob("*/.seed*.partial-*")) and not (tmp_path / "runs.lock").exists()
