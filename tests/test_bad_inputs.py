"""The bad-input catalogue (tests/bad_inputs.py): one clear line, no traceback, nothing lost."""
import re

import pytest
from click.testing import CliRunner

import sers.cache
from bad_inputs import CASES, Inputs, digest
from sers.cli import main
from tiny_models import tiny_model  # noqa: F401  (pytest fixture)

PROGRESS = re.compile(r"\d+%\|")  # a progress bar's line (tqdm, on stderr), not a message


@pytest.fixture(scope="module")
def inputs(tiny_model):
    return Inputs(model=tiny_model("wavlm"))


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.group for case in CASES} == {"manifest", "audio", "cache", "anchors", "similarity", "runs", "outputs",
                                              "npz", "limits"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("SERS_DEBUG", raising=False)
    built = case.build(inputs, tmp_path)
    before = {path: digest(path) for path in built.keeps}
    result = CliRunner().invoke(main, built.argv)
    stderr_lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip() and not PROGRESS.search(line)]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if case.kind in ("fail", "usage"):
        assert result.exit_code == (2 if case.kind == "usage" else 1), result.output
        # stderr: the log lines of the work done before (logs go there), then the error as one line, last
        errors = [line for line in stderr_lines if line.startswith("error")]
        assert errors == stderr_lines[-1:] and errors[0].startswith("error: "), result.stderr
        assert built.names in errors[0]
    else:
        assert result.exit_code == 0, result.output
        assert not [line for line in stderr_lines if line.startswith("error")], result.stderr
        out = built.argv[built.argv.index("--out") + 1]
        with sers.cache.open(out) as cache:
            cache.require_complete()
            errors = cache.errors
        if case.kind == "record":  # the bad row is an error, named on the console; the good rows are kept
            assert len(cache.utterances) == 2 and len(errors) == 1
            assert built.names in errors[0]["id"] + errors[0]["path"]
            assert "failed utterances" in result.stdout and errors[0]["id"] in result.stdout
        else:
            assert len(cache.utterances) == 3 and not errors
    for path, value in before.items():
        assert digest(path) == value, f"{path} changed"
