"""One writer per cache: a lock file beside the store, held for the whole run.

``<out>.lock`` (beside the store, so that ``--overwrite`` can remove the store itself)
holds the host, pid, start time and command of the writer. A second writer, or an
``--overwrite`` from another shell, is refused with one line naming the holder. A lock
left by a process that no longer runs on this host is reported as stale, with the
command that clears it; we do not clear it silently, because the same path may be
mounted on another machine whose processes we cannot see. Readers take no lock.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

from sers.errors import SersError


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
        holder = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise SersError(self._refusal()) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _refusal(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            host, pid, started = holder["host"], int(holder["pid"]), holder.get("started", "?")
        except (OSError, ValueError, KeyError, TypeError):
            return (f"{self.store} is locked by {self.path}, which is unreadable (a writer killed while "
                    f"taking it?); if no other sers command writes {self.store}, run: rm {self.path}")
        who = f"pid {pid} on {host}, started {started}"
        if host == socket.gethostname() and not _running(pid):
            return (f"{self.store} has a stale writer lock ({who}, no longer running); "
                    f"finished work in it is kept: run `rm {self.path}` and rerun the command to resume")
        return (f"{self.store} is being written by another sers command ({who}); wait for it to finish "
                f"or stop it (if it is gone, run: rm {self.path})")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
