"""One writer per cache: a lock file beside the store, held for the whole run.

``<out>.lock`` (beside the store, so that ``--overwrite`` can remove the store itself)
holds the host, pid, start time and command of the writer. A second writer, or an
``--overwrite`` from another shell, is refused with one line naming the holder.

A lock left by a killed writer (SLURM time limit, OOM killer) is stale. On the same host
that is certain (the pid is gone, or now belongs to a process started later): the lock is
taken over, with a note on stderr, so that "rerun the same command" still resumes. A lock
from another host cannot be checked from here: it is reported with the command that
clears it. Readers take no lock.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

from sers.errors import SersError
from sers.workers import process_alive


def lock_path(store) -> Path:
    store = Path(store)
    return store.with_name(store.name + ".lock")


class WriterLock:
    """``with WriterLock(path): ...`` — taken on enter, released on exit (also on errors)."""

    def __init__(self, store):
        self.store = Path(store)
        self.path = lock_path(store)
        self._held = False

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                stale = self._stale_holder()
                if stale is None:
                    raise SersError(self._refusal()) from None
                try:  # rename, not unlink: of two writers taking over at once, one wins
                    self.path.rename(self.path.with_name(f"{self.path.name}.stale-{os.getpid()}"))
                except FileNotFoundError:
                    continue
                self.path.with_name(f"{self.path.name}.stale-{os.getpid()}").unlink()
                print(f"note: {self.store}: took over the writer lock of {stale}, which is no longer running",
                      file=sys.stderr)
        else:
            raise SersError(self._refusal())
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        self._held = True
        return self

    def _stale_holder(self) -> str | None:
        """'pid N (started T)' when the lock was left by a process of this host that is gone."""
        holder = self._holder()
        if holder is None or holder["host"] != socket.gethostname():
            return None
        pid = int(holder["pid"])
        if process_alive(pid) and holder.get("process_start") in (None, _process_start(pid)):
            return None
        return f"pid {pid} (started {holder.get('started', '?')})"

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
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _refusal(self) -> str:
        holder = self._holder()
        if holder is None:
            return (f"{self.store} is locked by {self.path}, which is unreadable (a writer killed while "
                    f"taking it?); if no other sers command writes {self.store}, run: rm {self.path}")
        who = f"pid {holder['pid']} on {holder['host']}, started {holder.get('started', '?')}"
        if holder["host"] != socket.gethostname():
            return (f"{self.store} is locked by a writer on another machine ({who}); if that command is no "
                    f"longer running, clear the stale lock with: rm {self.path} (finished work is kept)")
        return (f"{self.store} is being written by another sers command ({who}); wait for it to finish "
                f"or stop it first")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid from the lock's writer."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
