"""Caches as stage functions take them: a path (opened here, closed when the stage ends) or an open reader."""
from __future__ import annotations

from contextlib import ExitStack

import sers.cache


def open_reader(cache, opened: ExitStack) -> sers.cache.CacheReader:
    """A complete cache's reader. A path is opened and closed with ``opened``; a reader passed in is
    used as it is and left open (whoever opened it closes it)."""
    if isinstance(cache, sers.cache.CacheReader):
        return cache
    return opened.enter_context(sers.cache.open(cache)).require_complete()
