"""Where the command line's choice lists and registry-made help come from: this file only.

Every fixed choice of an option is a :class:`Choices` naming the constant or registry that
owns the names ("module:NAME"); help that lists a registry is a :class:`ListedHelp` option.
Both read their module on first use, not at import: `sers --help` imports none of them (the
classifier and model modules import torch), a command's own --help or run imports what it
lists. tests/test_cli_choices.py checks that each one equals its source.
"""
from __future__ import annotations

import importlib
from functools import cached_property
from typing import Callable

import click

METHODS = "sers.classifiers.methods:METHODS"              # training methods (the registry; no torch)
VOWEL_METHODS = "sers.classifiers.methods:VOWEL_METHODS"

MEASURES = "sers.analysis.measures:MEASURES"                # every column a similarity table can have
MEASURE_NAMES = "sers.analysis.measures:MEASURE_NAMES"      # what `--measures` can ask for
CORPUS_READERS = "sers.inputs.corpora:READERS"
ALIGNMENT_FORMATS = "sers.inputs.alignments:FORMATS"
DTYPES = "sers.upstream.options:DTYPES"
WHISPER_INPUTS = "sers.upstream.options:WHISPER_INPUTS"
IMPORT_LAYOUTS = "sers.cache.interop:LAYOUTS"
EXPORT_FORMATS = "sers.cache.interop:EXPORT_FORMATS"
SYNTH_ENGINES = "sers.synth:ENGINES"
LEVELS = "sers.pipeline.options:LEVELS"
STRATEGIES = "sers.pipeline.options:STRATEGIES"
SELECT_CRITERIA = "sers.classifiers.options:SELECTORS"
CORAL_SCALES = "sers.classifiers.options:CORAL_SCALES"
NORMALISATIONS = "sers.classifiers.options:NORMALIZE"
GROUP_WEIGHTS = "sers.classifiers.options:GROUP_WEIGHTS"
ALIGN_LEVELS = "sers.classifiers.options:ALIGN"
FEATURES = "sers.classifiers.options:FEATURES"
BACKENDS = "sers.pipeline.options:BACKENDS"
STATS = "sers.pipeline.options:STATS_CHOICES"
SPEAKER_NORMS = "sers.pipeline.options:SPEAKER_NORMS"


def names(source: str) -> tuple[str, ...]:
    """The names of a "module:NAME" constant (a tuple, or a registry's keys), imported now."""
    module, attribute = source.split(":")
    return tuple(getattr(importlib.import_module(module), attribute))


class Choices(click.Choice):
    """A click.Choice whose choices are the names of a "module:NAME" constant, read on first use."""

    def __init__(self, source: str, case_sensitive: bool = True):
        # click.Choice.__init__ would read the choices now; the property below reads them when needed.
        self.source, self.case_sensitive = source, case_sensitive

    @cached_property
    def choices(self) -> tuple[str, ...]:
        return names(self.source)


class ListedHelp(click.Option):
    """An option whose help lists registry names, filled in when the help is shown: ``listed``
    maps a field of the help text (e.g. "{methods}") to a function giving its text."""

    def __init__(self, *args, listed: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.template, self.listed = self.help, listed

    def get_help_record(self, ctx):
        text = self.template
        for field, fill in self.listed.items():
            text = text.replace(field, fill())
        self.help = text
        return super().get_help_record(ctx)


def listing(source: str, suffix: str = "", last: str = ", ") -> Callable[[], str]:
    """A ``listed`` filler: the names of ``source``, each followed by ``suffix``, comma-joined
    (``last`` before the last one: " and " reads as a sentence)."""
    def fill() -> str:
        words = [f"{name}{suffix}" for name in names(source)]
        return last.join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)
    return fill


def corpus_formats() -> str:
    """'manifest: a CSV/TSV/JSONL manifest; msp-podcast: ...' from the corpus readers."""
    module, attribute = CORPUS_READERS.split(":")
    readers = getattr(importlib.import_module(module), attribute)
    return "; ".join(f"{name}: {reader.help}" for name, reader in readers.items())
