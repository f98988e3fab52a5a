"""The command line copies no list: each choice and each listed help comes from its registry or constant."""
import importlib
from pathlib import Path

import click

from sers.cli import main
from sers.cli import choices as cli_choices

# Every choice list of the CLI, by option, and the constant it must equal. A new Choice fails
# test_every_choice_is_named_here until it is added: its source is then checked too.
EXPECTED = {
    ("extract", "corpus_format"): "sers.inputs.corpora:READERS",
    ("extract", "dtype"): "sers.upstream.base:DTYPES",
    ("extract", "whisper_input"): "sers.upstream.whisper:WHISPER_INPUTS",
    ("extract", "alignment_format"): "sers.inputs.alignments:FORMATS",
    ("segments", "alignment_format"): "sers.inputs.alignments:FORMATS",
    ("cache import", "layout"): "sers.cache.interop:LAYOUTS",
    ("cache export", "export_format"): "sers.cache.interop:EXPORT_FORMATS",
    ("synth", "engine"): "sers.synth:ENGINES",
    ("similarity", "level"): "sers.pipeline.similarity:LEVELS",
    ("anchor", "level"): "sers.pipeline.similarity:LEVELS",
    ("anchor", "measure"): "sers.analysis.measures:MEASURES",
    ("anchor", "strategy"): "sers.pipeline.anchor:STRATEGIES",
    ("train", "select"): "sers.classifiers.selection:SELECTORS",
    ("train", "coral_scale"): "sers.classifiers.losses:CORAL_SCALES",
    ("train", "normalize"): "sers.classifiers.data:NORMALIZE",
    ("train", "group_weights"): "sers.classifiers.estimator:GROUP_WEIGHTS",
    ("train", "align"): "sers.classifiers.estimator:ALIGN",
    ("train", "features"): "sers.classifiers.estimator:FEATURES",
    ("train", "backend"): "sers.pipeline.train:BACKENDS",
    ("evaluate", "stats"): "sers.pipeline.evaluate:STATS_CHOICES",
    ("similarity", "speaker_norm"): "sers.pipeline.speakers:SPEAKER_NORMS",
    ("anchor", "speaker_norm"): "sers.pipeline.speakers:SPEAKER_NORMS",
    ("train", "speaker_norm"): "sers.pipeline.speakers:SPEAKER_NORMS",
    ("predict", "stats"): "sers.pipeline.evaluate:STATS_CHOICES",
}


def _commands(group=main, prefix=""):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        full = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            yield from _commands(command, full)
        else:
            yield full, command


def _constant(source):
    module, name = source.split(":")
    return tuple(getattr(importlib.import_module(module), name))


def _choice_options():
    for name, command in _commands():
        for param in command.params:
            if isinstance(param.type, click.Choice):
                yield (name, param.name), param


def test_every_choice_is_named_here():
    assert {key for key, _ in _choice_options()} == set(EXPECTED)


def test_every_choice_equals_its_registry_or_constant():
    for key, param in _choice_options():
        assert tuple(param.type.choices) == _constant(EXPECTED[key]), key
        if isinstance(param.default, str):
            assert param.default in param.type.choices, key


def test_listed_help_names_the_registry_entries():
    from sers.analysis.measures import LABEL_AWARE, MEASURE_NAMES
    from sers.classifiers.methods import METHODS
    from sers.inputs.corpora import READERS

    def help_of(command_name, option):
        command = dict(_commands())[command_name]
        ctx = click.Context(command, info_name=command_name)
        param = next(p for p in command.params if p.name == option)
        return param.get_help_record(ctx)[1]

    assert f"Comma list of {', '.join(MEASURE_NAMES)}." in help_of("similarity", "measures")
    assert f"for {', '.join(LABEL_AWARE[:-1])} and {LABEL_AWARE[-1]};" in help_of("similarity", "target_labels")
    assert f"Comma list of: {', '.join(METHODS)} (and lam+vowel, lam-gl+vowel)." in help_of("train", "methods")
    assert all(f"{name}: {reader.help}" in help_of("extract", "corpus_format") for name, reader in READERS.items())


def test_the_cli_imports_no_stage_until_a_command_needs_it():
    import subprocess
    import sys

    code = ("import sys, sers.cli; heavy = [m for m in ('torch', 'numpy', 'sers.pipeline', 'sers.classifiers') "
            "if m in sys.modules]; print(heavy)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_help_of_every_command_loads_neither_torch_nor_transformers():
    """`sers extract --help` took 4-15 s while its choice lists imported torch and transformers."""
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom sers.cli import main\n"
            "from test_cli_choices import _commands\n"
            "for name, command in _commands():\n"
            "    result = CliRunner().invoke(main, name.split() + ['--help'])\n"
            "    assert result.exit_code == 0, (name, result.output)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_methods_are_looked_up_in_one_place():
    assert cli_choices.METHODS.endswith(":METHODS")
    assert cli_choices.names(cli_choices.METHODS) == _constant("sers.classifiers.methods:METHODS")


# What does not follow the writing commands' conventions, and why.
NOT_WRITING = {"inspect": "reads only",
               "models whisper-base": "prints a path; the folder it prepares is checked by sha256 and reused",
               "demo": "a scratch folder it regenerates by design (-o, default demo_out)"}


def test_every_command_that_writes_takes_o_overwrite_and_quiet():
    for name, command in _commands():
        if name in NOT_WRITING:
            continue
        options = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
        # segments adds to its input; cache upgrade adds metadata to its input and never replaces it
        in_place = name in ("segments", "cache upgrade")
        wanted = {"--quiet"} | (set() if name == "cache upgrade" else {"--overwrite"}) | (set() if in_place else {"-o"})
        missing = wanted - options
        assert not missing, f"sers {name} lacks {sorted(missing)}"


def test_train_defaults_are_the_same_in_the_cli_the_pipeline_and_the_estimator():
    """Three places state the training defaults (the CLI cannot import the torch-side modules at
    start-up); they must agree, or `sers train` and the Python API train different models."""
    import dataclasses

    from sers.classifiers.estimator import LayerAnchoringClassifier
    from sers.pipeline.train import TrainSettings

    command = dict(_commands())["train"]
    cli = {param.name: param.default for param in command.params if isinstance(param, click.Option)}
    estimator = LayerAnchoringClassifier().get_params()
    settings = {field.name: field.default for field in dataclasses.fields(TrainSettings)}
    for name in ("hidden", "dropout", "epochs", "batch_size", "lr", "weight_decay", "patience", "normalize",
                 "group_weights", "coral_scale"):
        assert cli[name] == settings[name] == estimator[name], name
    assert cli["hidden"] == 512 and cli["lr"] == 3e-3  # the source-dev sweep's choice (training_defaults.md)
