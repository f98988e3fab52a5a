"""`--config FILE.toml`: option defaults for the stage commands from one experiment file.

The file holds one table per command (``[extract]``, ``[similarity]``, ``[anchor]``, ``[train]``,
``[report]``), so that one file serves a whole protocol; each command reads its own table. A
key is an option's long name as typed on the command line without the leading ``--``, dashes
kept (``batch-size = 64``, ``no-ablations = true``, ``lambda = [0, 0.3, 1]``); a list stands for the
option's comma list (or, for a repeatable option such as ``--anchors``, one value per repeat).
The file's values are the command's defaults (click's ``default_map``): options typed on the
command line override them. Relative paths are read from the current folder, as typed ones are.

A command checks the whole file before it does anything: its own table fully (each value as
its option would take it), the other commands' tables by key and type (their files may not
exist yet: an earlier stage writes them), so that a typo in ``[train]`` stops ``sers extract``
before hours of GPU time. Each refusal is one usage error (exit 2) naming the file, the table
and the key.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import sys
from pathlib import Path

import click
from click.core import ParameterSource

if sys.version_info >= (3, 11):
    import tomllib
else:  # setup.cfg requires tomli before 3.11
    import tomli as tomllib

# Where a resolved option came from, as the sweep record words it.
SOURCES = {ParameterSource.COMMANDLINE: "command line", ParameterSource.DEFAULT_MAP: "config file",
           ParameterSource.DEFAULT: "default", ParameterSource.ENVIRONMENT: "environment",
           ParameterSource.PROMPT: "prompt"}
META = "sers.config"  # ctx.meta key: {"path", "given", "sha256", "table"} of the file read


class ConfigOption(click.Option):
    """The --config option; ``table`` is the file's table its command reads, ``example`` a line of it."""

    def __init__(self, *args, table: str, example: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.table, self.example = table, example


def config_option(table: str, example: str):
    """Decorator giving a command ``--config FILE.toml`` read from ``[table]`` (``example``: a line of it,
    for the help). It also names the file
    and key in a usage error that the command's body raises about a value the file gave (--seeds
    parsed there, for instance), which click alone would lay at the option's door."""
    def decorate(function):
        @functools.wraps(function)
        def named(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except click.BadParameter as exc:
                _blame_the_file(click.get_current_context(), exc)
                raise
        return click.option(
            "--config", cls=ConfigOption, table=table, example=example, type=click.Path(exists=True, dir_okay=False),
            metavar="FILE.toml", is_eager=True, expose_value=False, callback=_read,
            help=f"TOML file whose [{table}] table gives this command's defaults: keys are the long option "
                 f"names without --, e.g. {example}; a list for a comma list. Options given on the "
                 "command line override it (docs/quickstart.md, configs/paper-protocol.toml).")(named)
    return decorate


def _read(ctx: click.Context, param: ConfigOption, value) -> None:
    """The eager option's callback: set ``ctx.default_map`` from the file before any other option is read."""
    if value is None:
        return
    path = Path(value)
    data = path.read_bytes()
    try:
        tables = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"{path}: not a TOML file ({' '.join(str(exc).split())})", ctx) from None
    readers = _readers(ctx, param)
    for table, options in tables.items():
        if not isinstance(options, dict):
            raise click.UsageError(f"{path}: {table} = ... is outside a command's table; put it under "
                                   f"[{param.table}] (tables: {_listed(readers)})", ctx)
        if table not in readers:
            raise click.UsageError(f"{path}: [{table}] is not a command that reads --config (tables: "
                                   f"{_listed(readers)})", ctx)
        defaults = check_table(path, table, options, readers[table], ctx, full=table == param.table)
        if table == param.table:
            ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[META] = {"path": str(path.resolve()), "given": str(path), "sha256": hashlib.sha256(data).hexdigest(),
                      "table": param.table}


def _readers(ctx: click.Context, param: ConfigOption) -> dict[str, click.Command]:
    """table -> command, for every command of the root group with a --config (this one at least)."""
    root = ctx.find_root().command
    commands = [*getattr(root, "commands", {}).values(), ctx.command]
    return {p.table: command for command in commands for p in command.params if isinstance(p, ConfigOption)}


def _listed(readers) -> str:
    return ", ".join(f"[{name}]" for name in sorted(readers))


def options_of(command: click.Command) -> dict[str, click.Option]:
    """key -> option: every option of ``command`` but --config, by its long name without --."""
    return {max(p.opts, key=len).lstrip("-"): p for p in command.params
            if isinstance(p, click.Option) and not isinstance(p, ConfigOption)}


def check_table(path, table: str, options: dict, command: click.Command, ctx: click.Context,
                full: bool = True) -> dict:
    """The ``default_map`` of one table ({parameter name: value as click takes it}), or a usage error
    naming the file and key. ``full``: also convert each value as its option does, files included
    (otherwise files are not looked for, as another stage may write them)."""
    known = options_of(command)
    defaults = {}
    for key, value in options.items():
        where = f"{path}: [{table}] {key}"
        option = known.get(key)
        if option is None:
            hint = (f"write {key.replace('_', '-')} (dashes, as on the command line)"
                    if key.replace("_", "-") in known else f"the keys of [{table}] are {', '.join(known)}")
            raise click.UsageError(f"{where}: not an option of sers {command.name}; {hint}", ctx)
        plain = _as_typed(option, value, where, ctx)
        try:
            if full:
                option.process_value(ctx, plain)
            elif not isinstance(option.type, click.Path):
                option.type_cast_value(ctx, plain)
        except click.BadParameter as exc:
            raise click.UsageError(f"{where}: {' '.join(exc.message.split())}", ctx) from None
        defaults[option.name] = plain
    return defaults


def _as_typed(option: click.Option, value, where: str, ctx) -> object:
    """A TOML value as the command line would give it: a flag's true/false, a repeatable option's list
    of strings, else one string (a list joined by commas, as --method last,lam)."""
    if option.is_flag:
        if not isinstance(value, bool):
            raise click.UsageError(f"{where}: a flag takes true or false, not {_kind(value)}", ctx)
        return value
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, (bool, dict, list, _dt.date, _dt.time)):
            raise click.UsageError(f"{where}: expected a string, a number or a list of them, not {_kind(item)}", ctx)
    words = [str(item) for item in items]
    return words if option.multiple else ",".join(words)


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    for kinds, word in ((dict, "a table"), (list, "a list"), (str, "a string"), ((int, float), "a number")):
        if isinstance(value, kinds):
            return word
    return "a date or time"


def _blame_the_file(ctx: click.Context, exc: click.BadParameter) -> None:
    """Add '(from FILE [table] key)' to a body-raised error about an option whose value the file gave."""
    hint, config = exc.param_hint, ctx.meta.get(META)
    if config is None or not isinstance(hint, str):
        return
    for key, option in options_of(ctx.command).items():
        if hint in option.opts and ctx.get_parameter_source(option.name) == ParameterSource.DEFAULT_MAP:
            exc.message = f"{exc.message} (from {config['given']} [{config['table']}] {key})"
            return


def resolved(ctx: click.Context) -> dict:
    """What a run records of its options: each one's resolved value and where it came from (command
    line, config file, default), and the config file's path and sha256 (None without --config)."""
    options = {}
    for key, option in options_of(ctx.command).items():
        value = ctx.params.get(option.name)
        source = ctx.get_parameter_source(option.name)
        options[key] = {"value": list(value) if isinstance(value, tuple) else value,
                        "source": SOURCES.get(source, str(source))}
    config = ctx.meta.get(META)
    return {"config_file": {"path": config["path"], "sha256": config["sha256"]} if config else None,
            "options": options}
