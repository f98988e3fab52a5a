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

from sers.cache.lock import process_alive

POLL_SECONDS = 0.5


def exit_with_parent(parent_pid: int) -> None:
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="exit-with-parent").start()


def _watch(parent_pid: int) -> None:
    while process_alive(parent_pid):
        time.sleep(POLL_SECONDS)
    os._exit(1)
