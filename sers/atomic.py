"""Write outputs so that a killed command never leaves a half-written file that looks whole.

Everything goes to a temporary name in the same folder first and is renamed into place
once complete (a rename within one file system is atomic): a later command sees the old
file, or none, or the new one, never a truncated JSON, CSV or HTML.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    Works for files and folders (a folder replaces an existing one of the same name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    _remove(temporary)
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            temporary.rename(path)
            _remove(old)
        else:
            os.replace(temporary, path)
    except OSError as exc:
        # A write that fails when its buffer is flushed (a full disk, mostly) names no file: name the
        # output, so that the error line says which one ("no space left ... while writing runs/lam/seed0").
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        _remove(temporary)


def refuse_existing(*paths, overwrite: bool) -> None:
    """Stop before any work when an output is already there, unless ``overwrite``: a result
    someone kept is replaced only when asked for (`--overwrite` on the command line)."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            from sers.errors import SersError

            raise SersError(f"{path} exists: pass --overwrite to replace it")


def write_text(path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding=encoding)
    return Path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
