"""The writer lock on filelock: the holder named, a SIGKILLed holder's lock taken over, another host's
left holder reported, and a filesystem without flock refused in one line (no model, no cache)."""
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sers.cache.lock import WriterLock, flock_path, lock_path
from sers.errors import SersError

ROOT = Path(__file__).resolve().parent.parent
HOLD = "import sys, time; from sers.cache.lock import WriterLock; WriterLock(sys.argv[1]).acquire(); " \
       "open(sys.argv[2], 'w').close(); time.sleep(600)"


def test_a_held_lock_names_its_holder_and_release_leaves_only_the_flock_file(tmp_path):
    store = tmp_path / "c.zarr"
    with WriterLock(store):
        holder = json.loads(lock_path(store).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(SersError, match=rf"c.zarr is being written by another sers command \(pid {os.getpid()} on "):
            WriterLock(store).acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.zarr.flock"]  # flock needs the file to stay
    with WriterLock(store):  # and it can be taken again
        assert lock_path(store).exists()


def test_the_kernel_frees_a_sigkilled_holders_lock_and_the_rerun_notes_the_take_over(tmp_path, capsys):
    store, marker = tmp_path / "runs", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store), str(marker)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(SersError, match=rf"being written by another sers command \(pid {holder.pid} on"):
            WriterLock(store).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(store).exists()  # what the killed writer left
    with WriterLock(store):
        assert json.loads(lock_path(store).read_text())["pid"] == os.getpid()
    assert f"took over the writer lock of pid {holder.pid}" in capsys.readouterr().err
    assert not lock_path(store).exists()


def test_a_holder_file_left_on_another_host_or_unreadable_is_reported_with_its_rm(tmp_path):
    store = tmp_path / "c.h5"
    lock_path(store).write_text(json.dumps({"host": "another-node", "pid": 1, "started": "then"}))
    with pytest.raises(SersError, match=rf"another machine \(pid 1 on another-node, started then\).*rm {lock_path(store)}"):
        WriterLock(store).acquire()
    lock_path(store).write_text("{")
    with pytest.raises(SersError, match=rf"unreadable; .* run: rm {lock_path(store)}"):
        WriterLock(store).acquire()
    assert lock_path(store).read_text() == "{"  # a refusal leaves the holder file alone
    lock_path(store).unlink()
    WriterLock(store).acquire().release()  # the refusals gave the flock back: after the rm, it is taken


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_filesystem_without_flock_is_one_line(tmp_path, monkeypatch, code):
    def no_flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    store = tmp_path / "c.zarr"
    with pytest.raises(SersError) as err:
        WriterLock(store).acquire()
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{store}: cannot take the writer lock {flock_path(store)}: ")
    assert "does not support flock" in message and not lock_path(store).exists()
