"""Helper processes that never outlive the command that started them.

A ProcessPoolExecutor worker waits on its task queue forever: when the main process is
killed outright (SIGKILL, the kernel's OOM killer) nobody tells it, and it lingers,
holding the caller's terminal or pipe open. ``exit_with_parent`` (a pool initializer)
starts a thread in the worker that ends it once the main process is gone.

``worker_pool`` starts such workers without the caller's ``__main__``: a forkserver or spawn
child imports the script that started its parent (CPython's forkserver never preloads it,
though it means to), so every worker of a script that imports torch spent ~1.5 s of CPU
importing it again (3 s before the first batch on 2 cores, docs/benchmarks/extract.md), and
a script without an ``if __name__ == "__main__":`` guard ran itself again in each worker.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor

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


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` forkserver processes, started now, which end with this process and do not import
    the caller's ``__main__`` (their tasks must be functions of importable modules, as sers's are).

    forkserver, not fork: a forked copy of torch's thread pool made extraction twice as slow.
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))
    with _without_main():
        # A forkserver pool starts one process per submit, in submit(), until it has ``workers``.
        for _ in range(workers):
            pool.submit(os.getpid)
    return pool


@contextlib.contextmanager
def _without_main():
    """``__main__`` as an empty module, which multiprocessing's children have nothing to import from."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
