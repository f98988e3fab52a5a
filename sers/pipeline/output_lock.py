"""One writer per output of a stage-2 command: the lock `sers extract` takes for a cache.

`sers train`, `sers similarity` (and `sers anchor` when it runs the similarity) and
`sers evaluate` hold ``<out>.lock`` (:mod:`sers.cache.lock`, beside the output folder) from
their first check of the folder to their last file written. Two commands writing one folder
would otherwise both succeed, each saying "wrote ...", with one's files beside or over the
other's; the second is refused with one line naming the first (pid, host, start time). A lock
left by a killed command is taken over by the next one on the same host, with a note.
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path

from sers.cache.lock import WriterLock


def writer_lock(out) -> WriterLock:
    return WriterLock(Path(out).resolve())


def locked_output(parameter: str):
    """Decorate a stage function so that it holds the writer lock of its argument ``parameter``
    (an output folder or file; None: nothing written, no lock) for the whole call."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments.get(parameter)
            if out is None:
                return function(*args, **kwargs)
            with writer_lock(out):
                return function(*args, **kwargs)
        return locked
    return decorate
