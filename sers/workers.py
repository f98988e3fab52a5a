"""Helper processes that never outlive the command that started them.

A ProcessPoolExecutor worker waits on its task queue forever: when the main process is
killed outright (SIGKILL, the kernel's OOM killer) nobody tells it, and it lingers,
holding the caller's terminal or pipe open. ``exit_with_parent`` (a pool initializer)
starts a thread in the worker that ends it once the main process is gone.
"""
from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def exit_with_parent(parent_pid: int) -> None:
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="exit-with-parent").start()


def _watch(parent_pid: int) -> None:
    while process_alive(parent_pid):
        time.sleep(POLL_SECONDS)
    os._exit(1)
