"""`--config FILE.toml` (sers.cli.config): a TOML table per command gives its defaults, the command line
overrides them, mistakes are one usage error naming the file and key, and sweep.json records where each
value came from without letting that change the sweep's digest."""
import hashlib
import json
import re
import shlex
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bad_inputs import cache
from sers.cli import main, parse_layers, parse_seeds
from sers.cli.config import ConfigOption, check_table, options_of, tomllib
from sers.cli.train import _parse_lambdas
from sers.pipeline.train_resume import SWEEP

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "configs" / "paper-protocol.toml"
STAGES = ("extract", "similarity", "anchor", "train", "report")
# One seed, one method, two epochs of a 16-wide head: a second or two per sweep.
FAST = """
[train]
method = ["last"]
seeds = "0"
epochs = 2
hidden = 16
no-plots = true
quiet = true
"""


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("caches")
    return str(cache(folder / "src.zarr", 40)), str(cache(folder / "tgt.zarr", 40, language="zh"))


def _write(folder: Path, text: str, name="exp.toml") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _train(caches, out, *extra):
    return CliRunner().invoke(main, ["train", *extra, "--source", caches[0], "--target", caches[1], "-o", str(out)])


def _estimator(out: Path) -> dict:
    return json.loads((out / "last" / "seed0" / "config.json").read_text())["estimator"]


def _invocation(out: Path) -> dict:
    return json.loads((out / SWEEP).read_text())["invocation"]


def test_the_file_gives_the_defaults_and_sweep_json_records_them(caches, tmp_path):
    config = _write(tmp_path, FAST)
    result = _train(caches, tmp_path / "runs", "--config", config)
    assert result.exit_code == 0, result.output
    estimator = _estimator(tmp_path / "runs")
    assert (estimator["epochs"], estimator["hidden"], estimator["method"]) == (2, 16, "last")
    assert not (tmp_path / "runs" / "anchors-only").exists() and not (tmp_path / "runs" / "last" / "seed1").exists()

    recorded = _invocation(tmp_path / "runs")
    assert recorded["config_file"]["path"] == str(Path(config).resolve())
    assert recorded["config_file"]["sha256"] == hashlib.sha256(Path(config).read_bytes()).hexdigest()
    options = recorded["options"]
    assert set(options) == set(options_of(main.commands["train"]))  # every option, resolved
    assert options["epochs"] == {"value": 2, "source": "config file"}
    assert options["method"] == {"value": "last", "source": "config file"}  # the list as its comma form
    assert options["no-plots"] == {"value": True, "source": "config file"}
    assert options["source"] == {"value": caches[0], "source": "command line"}
    assert options["lr"] == {"value": 3e-3, "source": "default"}


def test_the_command_line_overrides_the_file(caches, tmp_path):
    config = _write(tmp_path, FAST + 'lambda = [0, 1]\n')
    result = _train(caches, tmp_path / "runs", "--epochs", "1", "--config", config, "--hidden", "8")
    assert result.exit_code == 0, result.output
    estimator = _estimator(tmp_path / "runs")
    assert (estimator["epochs"], estimator["hidden"]) == (1, 8)
    options = _invocation(tmp_path / "runs")["options"]
    assert options["epochs"] == {"value": 1, "source": "command line"}
    assert options["seeds"] == {"value": "0", "source": "config file"}
    assert options["lambda"] == {"value": "0,1", "source": "config file"}
    # The spelled-out command of each run reruns it without the file.
    command = json.loads((tmp_path / "runs" / "last" / "seed0" / "config.json").read_text())["command"]
    assert "--config" not in command and "--epochs 1" in command and "--method last" in command


def test_help_shows_the_files_values_as_defaults(tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", _write(tmp_path, FAST), "--help"])
    assert result.exit_code == 0
    assert re.search(r"--epochs INTEGER RANGE\s+\[default: 2;", result.output), result.output


@pytest.mark.parametrize("text, words", [
    ("[train]\nepoch = 3\n", ["[train] epoch: not an option of sers train", "epochs, batch-size"]),
    ("[train]\nbatch_size = 3\n", ["[train] batch_size:", "write batch-size (dashes"]),
    ('[train]\nepochs = "many"\n', ["[train] epochs:", "'many' is not a valid integer"]),
    ("[train]\nepochs = 0\n", ["[train] epochs:", "0 is not in the range x>=1"]),
    ("[train]\nno-plots = 1\n", ["[train] no-plots: a flag takes true or false, not a number"]),
    ("[train]\nepochs = true\n", ["[train] epochs: expected a string, a number or a list of them, not true/false"]),
    ("[train]\nmethod = [[\"last\"]]\n", ["[train] method:", "not a list"]),
    ('[train]\nselect = "best"\n', ["[train] select:", "'best' is not one of"]),
    ("[train]\nsource = \"no-such.zarr\"\n", ["[train] source:", "no-such.zarr' does not exist"]),
    ('[train]\nseeds = "0-x"\n', ["--seeds", "expected seeds like 0-4", "[train] seeds"]),  # parsed in the command
    ("[trian]\nepochs = 3\n", ["[trian] is not a command that reads --config", "[anchor], [extract]"]),
    ("epochs = 3\n", ["epochs = ... is outside a command's table; put it under [train]"]),
    ("[similarity]\nmax-utterance = 5\n", ["[similarity] max-utterance: not an option of sers similarity"]),
    ("[train\n", ["not a TOML file", "line 1"]),
])
def test_a_mistake_is_one_usage_error_naming_the_file_and_key(caches, tmp_path, text, words):
    config = _write(tmp_path, text, "bad.toml")
    result = _train(caches, tmp_path / "runs", "--config", config)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "bad.toml" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_other_tables_are_checked_but_their_files_not_looked_for(tmp_path):
    # [train]'s caches are written by the stages before it: sers extract must not look for them.
    config = _write(tmp_path, '[train]\nsource = "later.zarr"\nepochs = 3\n[extract]\ndtype = "bfloat16"\n')
    result = CliRunner().invoke(main, ["extract", "--config", config, "--help"])
    assert result.exit_code == 0 and "[default: bfloat16]" in " ".join(result.output.split()), result.output
    config = _write(tmp_path, '[train]\nepochs = "many"\n', "typo.toml")
    result = CliRunner().invoke(main, ["extract", "--config", config, "--help"])
    assert result.exit_code == 2 and "typo.toml: [train] epochs:" in result.stderr, result.stderr


def test_resuming_with_the_same_values_typed_is_the_same_sweep(caches, tmp_path):
    out = tmp_path / "runs"
    assert _train(caches, out, "--config", _write(tmp_path, FAST)).exit_code == 0
    digest = json.loads((out / SWEEP).read_text())["digest"]
    typed = ["--method", "last", "--seeds", "0", "--epochs", "2", "--hidden", "16", "--no-plots", "--quiet"]
    result = _train(caches, out, *typed)
    assert result.exit_code == 0, result.output
    assert "1 of 1 runs are finished" in result.stderr, result.stderr
    recorded = json.loads((out / SWEEP).read_text())
    assert recorded["digest"] == digest
    assert recorded["invocation"]["config_file"] is None
    assert recorded["invocation"]["options"]["epochs"] == {"value": 2, "source": "command line"}

    # A file with another value is another sweep: refused, naming what changed.
    result = _train(caches, out, "--config", _write(tmp_path, FAST.replace("epochs = 2", "epochs = 3"), "e3.toml"))
    assert result.exit_code == 1 and "settings.epochs: 2 -> 3" in result.stderr, result.stderr


def test_every_stage_command_reads_its_own_table():
    for name in STAGES:
        command = main.commands[name]
        configs = [p for p in command.params if isinstance(p, ConfigOption)]
        assert [p.table for p in configs] == [name] and configs[0].opts == ["--config"], name
        # The help's example line is a valid line of that table.
        assert f"e.g. {configs[0].example};" in configs[0].help, configs[0].help
        check_table("help", name, tomllib.loads(configs[0].example), command, click.Context(command), full=False)


def test_the_paper_protocol_file_holds_real_options_that_parse():
    tables = tomllib.loads(PAPER.read_text())
    assert {"extract", "similarity", "anchor", "train"} <= set(tables) <= set(STAGES)
    for name, options in tables.items():
        command = main.commands[name]
        ctx = click.Context(command, info_name=name, parent=click.Context(main, info_name="sers"))
        defaults = check_table(PAPER, name, options, command, ctx)  # raises on an unknown key or bad value
        assert len(defaults) == len(options)
    train = check_table(PAPER, "train", tables["train"], main.commands["train"], click.Context(main.commands["train"]))
    assert parse_seeds(train["seeds"]) == [0, 1, 2, 3, 4] and (train["epochs"], train["patience"]) == ("50", "8")
    assert train["methods"] == "last,wsum,coral,dann,lam,lam-gl"
    if "lambda_" in train:
        _parse_lambdas(train["lambda_"])
    assert parse_layers(str(tables["anchor"]["exclude"][0])) == [0]


def test_the_paper_protocol_script_passes_the_file_to_every_stage():
    """Each `sers` stage of the script reads the file, and types no option the file sets (which would
    silently override it), but those the environment asks for (SEEDS, DEVICE, DTYPE)."""
    tables = tomllib.loads(PAPER.read_text())
    script = re.sub(r"\\\n\s*", " ", (ROOT / "configs" / "paper-protocol.sh").read_text())
    stages = [shlex.split(line.split("#", 1)[0]) for line in script.splitlines() if line.strip().startswith("sers ")]
    assert sorted(words[1] for words in stages) == sorted(["extract", "similarity", "anchor", "train", "report"])
    for words in stages:
        assert words[2:4] == ["--config", "$CONFIG"], words
        typed = {w.lstrip("-") for w in words if w.startswith("--")}
        assert not typed & set(tables.get(words[1], {})), (words[1], typed & set(tables.get(words[1], {})))


@pytest.mark.skipif(sys.platform == "win32", reason="bash")
def test_the_paper_protocol_script_is_valid_bash():
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "configs" / "paper-protocol.sh")]).returncode == 0
