"""One writer per cache: an OS file lock (flock, through `filelock`) beside the store, held for the whole run.

Two files beside the store (beside it, so that ``--overwrite`` can remove the store itself):

- ``.<name>.flock``, locked with flock(2) from acquire to release. The kernel drops that lock
  when the writer's process ends, however it ends (SLURM time limit, OOM killer, SIGKILL), so
  on one host a dead writer never holds it. The file stays, empty, after release: flock locks a
  file, and removing it would let two writers lock two different files of one name.
- ``<name>.lock``, the holder: host, pid, start time and command, written once the flock is
  held and removed before it is released, so that a refusal names who writes.

A second writer, or an ``--overwrite`` from another shell, is refused with one line naming the
holder. A ``<name>.lock`` found while the flock is free was left by a writer that died: one of
this host is taken over, with a note on stderr, so that "rerun the same command" still resumes;
one of another host is reported with the command that clears it, because on a filesystem whose
locks are local to each node (NFS mounted with ``local_lock``) a live writer there goes unseen.
A filesystem without flock (some NFS and Lustre mounts) is refused in one line. Readers take no lock.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import inspect
import json
import os
import socket
import sys
from pathlib import Path

import filelock

from sers.errors import SersError
from sers.workers import process_alive

# What flock answers for a lock that another process holds; anything else is the filesystem's refusal.
_CONTENTION = {errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK}
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
# filelock 4 would fall back to a lock file of its own, with no holder's name, where flock is missing.
_OPTIONS = {"fallback_to_soft": False} if "fallback_to_soft" in inspect.signature(filelock.UnixFileLock).parameters else {}


def lock_path(store) -> Path:
    """The holder file, ``<store>.lock``: it exists while a writer holds the lock (or was killed holding it)."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


def flock_path(store) -> Path:
    store = Path(store)
    return store.with_name(f".{store.name}.flock")


class WriterLock:
    """``with WriterLock(path): ...`` — taken on enter, released on exit (also on errors)."""

    def __init__(self, store):
        self.store = Path(store)
        self.path = lock_path(store)
        # timeout 0: a second writer is refused at once; not thread-local: a writer may close in another thread.
        self._flock = filelock.UnixFileLock(str(flock_path(store)), timeout=0, thread_local=False, **_OPTIONS)
        self._held = False

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._flock.acquire()
        except filelock.Timeout:
            raise SersError(self._refusal()) from None
        except (OSError, NotImplementedError) as exc:  # filelock 3 raises NotImplementedError for ENOSYS
            raise SersError(self._cannot_lock(getattr(exc.__cause__, "errno", None) or getattr(exc, "errno", None),
                                              exc)) from None
        try:
            left = self._holder()
            if self.path.exists():
                if left is None or left["host"] != socket.gethostname() or _still_running(left):
                    raise SersError(self._refusal(flock_free=True))
                print(f"note: {self.store}: took over the writer lock of pid {left['pid']} "
                      f"(started {left.get('started', '?')}), which is no longer running", file=sys.stderr)
            self._write_holder()
        except BaseException:
            self._flock.release()
            raise
        self._held = True
        return self

    def _write_holder(self) -> None:
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(holder))
        os.replace(partial, self.path)  # whole or absent: a refusal never reads half a holder

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            int(holder["pid"]), holder["host"]
            return holder
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        if self._held:
            self._held = False
            try:  # before the flock: a writer that takes it next writes its own holder file
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._flock.release()

    def _refusal(self, flock_free: bool = False) -> str:
        """Why this writer may not go on: the flock is held (``flock_free`` False), or it is free
        but ``<name>.lock`` names a writer that may still run."""
        holder = self._holder()
        if holder is None and flock_free:
            return (f"{self.store} is locked by {self.path}, which is unreadable; if no other sers command "
                    f"writes {self.store}, run: rm {self.path}")
        if holder is None:
            no_flock = _flock_error(flock_path(self.store))  # filelock 3 reads every flock error as "held"
            if no_flock is not None:
                return self._cannot_lock(no_flock.errno, no_flock)
            return (f"{self.store} is being written by another sers command, which has not named itself in "
                    f"{self.path} yet; wait for it to finish or stop it first")
        who = f"pid {holder['pid']} on {holder['host']}, started {holder.get('started', '?')}"
        if flock_free and holder["host"] != socket.gethostname():
            return (f"{self.store} is locked by a writer on another machine ({who}); if that command is no "
                    f"longer running, clear the stale lock with: rm {self.path} (finished work is kept)")
        return (f"{self.store} is being written by another sers command ({who}); wait for it to finish "
                f"or stop it first")

    def _cannot_lock(self, code, exc) -> str:
        where = flock_path(self.store)
        if code in _NO_FLOCK or isinstance(exc, NotImplementedError):
            return (f"{self.store}: cannot take the writer lock {where}: this filesystem does not support flock "
                    f"(some NFS and Lustre mounts); write to a local disk or a mount with flock (Lustre: -o flock) "
                    f"and copy the result")
        return f"{self.store}: cannot take the writer lock {where} ({getattr(exc, 'strerror', None) or exc})"

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _still_running(holder: dict) -> bool:
    """Whether this host's holder runs: its flock is free only if someone removed the .flock file under it."""
    pid = int(holder["pid"])
    return process_alive(pid) and holder.get("process_start") in (None, _process_start(pid))


def _flock_error(path: Path) -> OSError | None:
    """flock's own error on ``path`` when it is not contention (a lock another process holds)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return None if exc.errno in _CONTENTION else exc
    finally:
        os.close(fd)  # also drops a lock the probe won
    return None


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid from the lock's writer."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
