"""Nothing lost, nothing unexplained: interruptions, writer locks, full disks, dying processes,
model identity, non-finite features and half-written outputs."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sers.cache
import sers.pipeline.extract as extract_module
import sers.pipeline.extract_run as extract_run
from bad_inputs import cache, manifest, tone, trained_run
from sers import atomic
from sers.cache.lock import WriterLock, lock_path
from sers.cli import main
from sers.errors import SersError
from sers.inputs.manifest import read_manifest
from sers.pipeline.extract import extract
from tiny_models import make_tiny_model, tiny_model  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parent.parent


def _corpus(folder: Path, n: int = 6, missing: int = 0) -> Path:
    for i in range(n):
        tone(folder / f"u{i}.wav", 0.5 + 0.1 * i)
    rows = [f"u{i}.wav,{'NHAS'[i % 4]},train" for i in range(n)] + [f"gone{i}.wav,N,train" for i in range(missing)]
    (folder / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return folder / "m.csv"


def _extract(model, manifest_path, out, **options):
    options = {"workers": 0, "progress": False, "log": lambda line: None, "batch_seconds": 2.0,
               "pooled_chunk_rows": 2, **options}
    return extract(read_manifest(manifest_path), str(model), out, **options)


def _pooled(out):
    with sers.cache.open(out) as c:
        return dict(zip(c.utterances.id, c.pooled_layers(range(c.num_layers)).transpose(1, 0, 2)))


# -- every manifest row ends as a row or an error ---------------------------------------------------

def test_plan_errors_survive_an_interruption(tmp_path, tiny_model, monkeypatch):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a", n=3, missing=30)
    out = tmp_path / "c.zarr"
    real_run = extract_module.run_batches
    monkeypatch.setattr(extract_module, "run_batches", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _extract(model, m, out)
    with sers.cache.open(out) as c:  # laid out together with the errors found while planning
        assert len(c.errors) == 30 and not c.complete
    # A cache whose errors were cut off (an older sers killed while recording them) is completed too.
    backend = sers.cache.backends.open_backend(out, "a")
    for name in ("id", "path", "reason"):
        backend.array(f"errors/{name}").resize((7,))
    backend.close()
    monkeypatch.setattr(extract_module, "run_batches", real_run)
    summary = _extract(model, m, out)
    with sers.cache.open(out) as c:
        assert c.complete and len(c.utterances) == 3 and len(c.errors) == 30
        assert {e["id"] for e in c.errors} == {f"gone{i}" for i in range(30)}
    assert summary.n_failed == 30 and "gone0: " in summary.summary() and "sers inspect" in summary.summary()


# -- one writer per cache ------------------------------------------------------------------------------

def test_a_second_writer_and_an_overwrite_are_refused_while_a_writer_holds_the_lock(tmp_path, tiny_model):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.zarr"
    _extract(model, m, out)
    before = _pooled(out)
    with WriterLock(out):  # held by a live process: this one
        for overwrite in (False, True):
            with pytest.raises(SersError, match=f"being written by another sers command \\(pid {os.getpid()} on"):
                _extract(model, m, out, overwrite=overwrite)
    assert {k: v.tobytes() for k, v in _pooled(out).items()} == {k: v.tobytes() for k, v in before.items()}
    assert not lock_path(out).exists()


def test_a_stale_lock_is_taken_over_on_this_host_and_reported_from_another(tmp_path, tiny_model, capsys):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "then"}))
    _extract(model, m, out)
    assert f"took over the writer lock of pid {dead.pid}" in capsys.readouterr().err
    assert not lock_path(out).exists()
    lock_path(out).write_text(json.dumps({"host": "another-node", "pid": 1, "started": "then"}))
    with pytest.raises(SersError, match=f"another machine .*rm {lock_path(out)}"):
        _extract(model, m, out, overwrite=True)


# -- processes that die -----------------------------------------------------------------------------------

def test_killing_the_main_process_ends_its_decoding_workers(tmp_path, tiny_model):
    psutil = pytest.importorskip("psutil")
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a", n=40)
    command = [sys.executable, "-m", "sers.cli", "extract", "--model", str(model), "--manifest", str(m),
               "--out", str(tmp_path / "c.zarr"), "--batch-seconds", "0.5", "--workers", "2", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(Path(sers.__file__).parents[1])})
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    while len(parent.children(recursive=True)) < 4 and time.monotonic() < deadline:  # tracker, server, 2 workers
        time.sleep(0.05)
    helpers = parent.children(recursive=True)
    assert len(helpers) >= 4, "the workers never started"
    process.kill()  # as the OOM killer does: no handler runs
    process.wait()
    gone, alive = psutil.wait_procs(helpers, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, [" ".join(p.cmdline())[:80] for p in alive]


def test_decoding_workers_do_not_run_the_callers_script_again(tmp_path):
    """A script that calls sers without an `if __name__ == "__main__":` guard: its workers once imported
    it again (and so each ran it, or paid its torch import: 3 s before the first batch on 2 cores)."""
    marks = tmp_path / "imports.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import multiprocessing, os\n"
        f"open({str(marks)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "from sers.workers import worker_pool\n"
        "pool = worker_pool(2)\n"
        "print(len(multiprocessing.active_children()))\n"  # both started by now
        "assert pool.submit(os.getpid).result() != os.getpid()\n"
        "pool.shutdown(wait=True)\n")  # every started worker has finished starting up
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(sers.__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]
    assert marks.read_text().split() == [str(int(marks.read_text().split()[0]))]  # imported once: by itself


def _worker_dies(*args):
    os._exit(1)


def test_a_killed_decoding_worker_is_one_line_and_the_run_resumes(tmp_path, tiny_model, monkeypatch):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.zarr"
    monkeypatch.setattr(extract_run, "load_batch", _worker_dies)
    with pytest.raises(SersError, match="decoding worker died .*rerun the same command to resume"):
        _extract(model, m, out, workers=1)
    monkeypatch.undo()
    _extract(model, m, out)
    assert sers.cache.open(out).complete


def test_an_utterance_the_model_has_no_memory_for_is_recorded(tmp_path, tiny_model, monkeypatch):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    from sers.upstream.base import Upstream

    real = Upstream.hidden_states

    def hidden_states(self, waves):
        if any(len(w) > 16000 * 0.95 for w in waves):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(self, waves)

    monkeypatch.setattr(Upstream, "hidden_states", hidden_states)
    summary = _extract(model, m, tmp_path / "c.zarr")
    assert summary.n_utterances == 5 and summary.n_failed == 1
    assert "u5: " in summary.summary() and "out of memory" in summary.summary()


# -- disks: full, vanished ------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_a_full_disk_stops_the_run_before_it_fills_and_the_run_resumes(tmp_path, tiny_model, monkeypatch, suffix):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / f"c{suffix}"
    _extract(model, m, tmp_path / f"reference{suffix}")
    checks = []

    def free_space(path, reserve):
        checks.append(path)
        real(path, 10**18 if len(checks) == 2 else reserve)  # after the first batch the disk is (nearly) full

    real = extract_run._check_space_left
    monkeypatch.setattr(extract_run, "_check_space_left", free_space)
    with pytest.raises(SersError, match="disk is almost full .*every finished utterance is kept"):
        _extract(model, m, out)
    monkeypatch.undo()
    done = int(sers.cache.open(out).all_utterances.done.sum())
    assert 0 < done < 6
    _extract(model, m, out)
    reference, resumed = _pooled(tmp_path / f"reference{suffix}"), _pooled(out)
    assert all(np.array_equal(reference[k], resumed[k]) for k in reference)


def test_the_space_kept_free_is_what_this_runs_batches_write(tmp_path, tiny_model, monkeypatch):
    """A cache of a few kB is written on a disk with 20 MB free (a fixed 256 MB floor refused it);
    where the free space is below what a batch needs, --no-space-check goes on."""
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    free, real_usage = [20 * 10**6], shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=free[0]))
    with_frames = _extract(model, m, tmp_path / "frames.zarr", frame_layers="all")
    assert with_frames.n_utterances == 6 and sers.cache.open(tmp_path / "frames.zarr").complete
    free[0] = 2 * 10**6
    with pytest.raises(SersError, match=r"disk is almost full \(2.0 MB left, a batch of this run needs up to "
                                        r"8\.\d MB .*add --no-space-check to go on"):
        _extract(model, m, tmp_path / "c.zarr")
    assert _extract(model, m, tmp_path / "c.zarr", space_check=False).n_utterances == 6


def test_the_reserve_grows_with_the_largest_batch_and_its_frames(tmp_path, tiny_model):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    for frames in ("none", "all"):
        _extract(model, m, tmp_path / f"{frames}.zarr", frame_layers=frames)
    sizes = {}
    for frames in ("none", "all"):
        with sers.cache.CacheWriter.resume(tmp_path / f"{frames}.zarr") as writer, \
                sers.cache.open(tmp_path / f"{frames}.zarr") as cache:
            table = cache.all_utterances
            sizes[frames] = [extract_run._disk_reserve(writer, table, batches) - extract_run.DISK_SLACK_BYTES
                             for batches in ([[0]], [[0], [1, 2, 3, 4, 5]])]
            row = writer.num_layers * writer.hidden_size * 4
            assert sizes[frames][0] >= 2 * row and sizes[frames][1] >= 2 * 5 * row
    assert sizes["none"][0] < sizes["none"][1] and sizes["all"][0] > sizes["none"][0]
    assert max(sizes["all"]) < 10 * 2**20  # kB of features, not the 256 MB of a fixed floor


def test_no_space_left_mid_write_is_one_line_and_zarr_resumes(tmp_path, tiny_model, monkeypatch):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.zarr"
    real_flush, calls = sers.cache.CacheWriter.flush, []

    def flush(self):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "pooled" / "mean"))
        real_flush(self)

    monkeypatch.setattr(sers.cache.CacheWriter, "flush", flush)
    result = CliRunner().invoke(main, ["extract", "--model", str(model), "--manifest", str(m), "--out", str(out),
                                       "--workers", "0", "--quiet", "--batch-seconds", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    # stderr holds the log lines (the size estimate) and then the error, as one line, last
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert "no space left on the device" in errors[0] and "rerun the same command to resume" in errors[0]
    assert result.stdout == ""  # no result line: nothing was finished
    monkeypatch.undo()
    _extract(model, m, out)
    assert sers.cache.open(out).complete and len(sers.cache.open(out).utterances) == 6


def test_a_store_deleted_while_written_is_one_line(tmp_path, tiny_model, monkeypatch):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.zarr"
    real, calls = extract_run._check_space_left, []

    def vanish(path, reserve):
        calls.append(1)
        if len(calls) == 2:
            shutil.rmtree(path)
        real(path, reserve)

    monkeypatch.setattr(extract_run, "_check_space_left", vanish)
    with pytest.raises(SersError, match="deleted or moved while being written"):
        _extract(model, m, out)
    assert not lock_path(out).exists()


def test_a_kill_while_a_cache_is_created_leaves_nothing_at_its_path(tmp_path, tiny_model):
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a")
    out = tmp_path / "c.h5"
    leftover = tmp_path / ".c.creating.h5"
    leftover.write_bytes(b"\x89HDF\r\n half a file")  # what a killed creation leaves
    _extract(model, m, out)
    assert sers.cache.open(out).complete and not leftover.exists()


# -- model identity --------------------------------------------------------------------------------------------

def test_model_identity_is_the_weights_not_the_folder(tmp_path, tiny_model):
    m = _corpus(tmp_path / "a")
    first = make_tiny_model("wavlm", tmp_path / "model")
    shutil.copytree(first, tmp_path / "copy")
    _extract(first, m, tmp_path / "a.zarr")
    _extract(tmp_path / "copy", m, tmp_path / "b.zarr")
    sers.cache.open(tmp_path / "a.zarr").check_compatible(sers.cache.open(tmp_path / "b.zarr"))  # same weights

    _extract(first, m, tmp_path / "c.zarr", frame_layers="none")  # unfinished work would resume...
    make_tiny_model("wavlm", tmp_path / "model", seed=1)  # ...but other weights now sit at the same path
    with pytest.raises(SersError, match="model_weights_sha256"):
        _extract(first, m, tmp_path / "a.zarr")
    _extract(first, m, tmp_path / "d.zarr")
    with pytest.raises(SersError, match="caches come from different models: model_weights_sha256"):
        sers.cache.open(tmp_path / "a.zarr").check_compatible(sers.cache.open(tmp_path / "d.zarr"))


# -- stage 2: non-finite features, whole outputs ------------------------------------------------------------------

def test_non_finite_features_are_refused_with_ids_and_layers(tmp_path):
    path = cache(tmp_path / "c.zarr", nan_at=(2, slice(3, 10)))
    with sers.cache.open(path) as c:
        c.pooled(0)  # other layers read as usual
        with pytest.raises(SersError, match=r"layer\(s\) 2 for utterance\(s\) en3, en4, en5, en6, en7 and 2 more"):
            c.pooled_layers([1, 2])


def test_atomic_path_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "anchors.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target) as partial:
            partial.write_text('{"layers": [')
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["anchors.json"]


def test_a_killed_train_leaves_no_run_folder_that_looks_trained(tmp_path, monkeypatch):
    import sers.pipeline.train as train_module

    monkeypatch.setattr(train_module, "_write_curves", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trained_run(tmp_path)
    assert not (tmp_path / "runs" / "last").exists() or not any((tmp_path / "runs" / "last").iterdir())
    assert not (tmp_path / "runs" / "results.csv").exists()


def test_a_killed_report_or_similarity_keeps_the_earlier_files(tmp_path, monkeypatch):
    import sers.pipeline.report as report_module
    import sers.pipeline.similarity_outputs as outputs

    run = trained_run(tmp_path)
    assert CliRunner().invoke(main, ["report", str(run.parents[1]), "-o", str(tmp_path / "r.html")]).exit_code == 0
    before = (tmp_path / "r.html").read_bytes()
    monkeypatch.setattr(report_module, "render_html", lambda doc: (_ for _ in ()).throw(KeyboardInterrupt))
    result = CliRunner().invoke(main, ["report", str(run.parents[1]), "-o", str(tmp_path / "r.html"), "--overwrite"])
    assert result.exit_code == 130 and (tmp_path / "r.html").read_bytes() == before

    monkeypatch.setattr(outputs.plots, "layer_curves", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    result = CliRunner().invoke(main, ["similarity", str(tmp_path / "src.zarr"), str(tmp_path / "tgt.zarr"),
                                       "-o", str(tmp_path / "sim"), "--measures", "coral"])
    assert result.exit_code == 130 and not (tmp_path / "sim" / "similarity.json").exists()


def test_user_strings_in_the_report_are_escaped_and_not_read_as_mathtext(tmp_path):
    from sers.analysis.metrics import classification_metrics
    from sers.pipeline.report import write_report

    labels = ["<script>alert(1)</script>", r"$\frac{a}$"]
    folder = tmp_path / "runs" / "lam" / "seed0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": "lam", "seed": 0, "speaker": "<b>x</b>"}))
    (folder / "metrics.json").write_text(json.dumps(
        {"target_test": classification_metrics(labels, [labels[0], labels[0]], labels)}))
    html_path, _ = write_report(tmp_path / "runs", tmp_path / "r.html")
    text = html_path.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "$\\frac{a}$" in text


# -- tracebacks only when asked for -----------------------------------------------------------------------------

def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path, monkeypatch):
    import sers.pipeline.anchor as anchor_module

    monkeypatch.setattr(anchor_module, "anchor", lambda *a, **k: {}[0])
    argv = ["anchor", str(tmp_path / "s.json"), "-o", str(tmp_path / "a.json")]
    # "0" rather than delenv: monkeypatch records a variable it deletes only if it was set, and
    # `--debug` below sets it in os.environ, which would then outlive this test and make every
    # later test's usage errors click's three lines
    monkeypatch.setenv("SERS_DEBUG", "0")
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.stderr.startswith("error: unexpected KeyError") and "SERS_DEBUG=1" in result.stderr
    assert result.stderr.count("\n") == 1
    assert isinstance(CliRunner().invoke(main, ["--debug"] + argv).exception, KeyError)
    monkeypatch.setenv("SERS_DEBUG", "1")
    assert isinstance(CliRunner().invoke(main, argv).exception, KeyError)


# -- a finished command exits 0 (issue 24 item 9) ---------------------------------------------------------------

# `sers inspect` with a teardown as slow as torch's, zarr's and the decoding workers' on a loaded machine.
SLOW_TEARDOWN = """
import atexit, sys, time
atexit.register(time.sleep, 60)
from sers.cli import main
sys.argv[0] = "sers"
main()
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_result_is_printed_leaves_exit_status_0(tmp_path, signum):
    """benchmarks/exit_status.py: a SIGTERM or Ctrl-C in the second or so between a finished extract's
    summary and the process's end made it exit -15, 130 or 1; the command had done its work."""
    path = cache(tmp_path / "c.zarr")
    process = subprocess.Popen([sys.executable, "-c", SLOW_TEARDOWN, "inspect", str(path)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip(), process.stderr.read()
    _wait_until_sigterm_is_caught(process.pid)  # the command has returned: what is left is the teardown
    started = time.monotonic()
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0 and time.monotonic() - started < 20  # at once, not after the teardown
    stderr = process.stderr.read()
    assert "interrupted" not in stderr and "Traceback" not in stderr


def _wait_until_sigterm_is_caught(pid: int, timeout: float = 60) -> None:
    """Until the process handles SIGTERM (SigCgt in /proc: Python leaves SIGTERM to the kernel until
    sers's finished-command handler is installed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("the command never got to the end of its work")


def test_a_failed_command_still_fails_and_in_process_calls_leave_the_signal_handlers(tmp_path):
    failed = subprocess.run([sys.executable, "-m", "sers.cli", "inspect", str(_write_text(tmp_path / "x.zarr"))],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert CliRunner().invoke(main, ["inspect", str(cache(tmp_path / "c.zarr"))]).exit_code == 0
    assert {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} == before


def _write_text(path: Path) -> Path:
    path.write_text("not a cache")
    return path
