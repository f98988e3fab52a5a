"""The `sers` command line: one command per stage, each a thin wrapper.

Every command parses its options, calls one plain function in `sers.pipeline` (or another
module), and prints its result's ``summary()`` to stdout; progress bars and log lines go to
stderr, so that stdout holds results only. Exit status: 0 success, 1 bad input or data (a one-line
`error: ...`), 2 usage error (click), 130 interrupted. Tracebacks are shown only with
`sers --debug` or SERS_DEBUG=1.

This module holds the group `main`, its error handling and what the commands share; the
commands live one module per noun (extract, cache, synth, similarity, train, models, report)
and take their choice lists from :mod:`sers.cli.choices`. Conventions: inputs positional, the
output `-o/--out` (the positional output of earlier releases still works, with a note), `--quiet`
on every command that writes, and an existing result (cache, runs, similarity, anchors, report,
evaluation, predictions, export) replaced only with `--overwrite`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

import click

from sers import __version__
from sers.errors import SersError, describe_os_error


# click >= 8.2 shows a group's help for a bare `sers cache` by raising this usage error.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _debugging() -> bool:
    return os.environ.get("SERS_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """Turn every failure into one `error: ...` line on stderr (exit 1), with no traceback
    unless debugging: SersError as it is, a failed file operation in words, anything else
    (a bug) named by type with the way to see its traceback."""

    own_command_line = False

    def main(self, args=None, *more, **options):
        # No args: this process's own command line (the `sers` executable, python -m sers.cli), whose
        # exit status is what a script or scheduler reads; tests give args (CliRunner, main.main([...])).
        self.own_command_line = args is None
        return super().main(args, *more, **options)

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # `sers --bogus`: the group's own options
            self._usage(ctx, exc)

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
            if self.own_command_line:
                _keep_success()
            return result
        except click.UsageError as exc:  # a command's options, or an unknown command
            self._usage(ctx, exc)
        except SersError as exc:
            self._fail(ctx, str(exc))
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume", err=True)
            ctx.exit(130)
        except OSError as exc:
            if _debugging():
                raise
            self._fail(ctx, f"{describe_os_error(exc)}; finished outputs are kept: fix that and rerun the command")
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence against a bare traceback
            if _debugging():
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._fail(ctx, f"unexpected {type(exc).__name__}: {first} (a bug in sers: rerun with "
                            "SERS_DEBUG=1 for the traceback and report it)")

    @staticmethod
    def _usage(ctx, exc: click.UsageError):
        """A usage error as one line, as sers's own errors are, where click prints three (usage, hint,
        error); exit status 2 as click's. `sers cache` alone still shows its help."""
        if isinstance(exc, _NO_ARGS_IS_HELP) or _debugging():
            raise exc
        where = (exc.ctx or ctx).command_path
        click.echo(f"error: {' '.join(exc.format_message().split())} (see {where} --help)", err=True)
        ctx.exit(exc.exit_code)

    @staticmethod
    def _fail(ctx, message: str):
        click.echo(f"error: {' '.join(message.split())}", err=True)  # one line, whatever the message held
        ctx.exit(1)


def echo_result(result, quiet: bool = False) -> None:
    """Print a stage's result (unless ``quiet``). The stage has returned, so its work is done: from
    here on the command succeeds, whatever signal comes (see :func:`_keep_success`)."""
    if main.own_command_line:
        _keep_success()
    if not quiet:
        click.echo(result.summary())


def _keep_success() -> None:
    """The command's stage has done its work: nothing may turn that into a failure.

    What is left is printing the result, click's exit and the interpreter's teardown (torch, zarr, the decoding workers'
    pool), a second or more on a loaded machine. A SIGTERM (a scheduler's time limit) or Ctrl-C in that
    window used to end a finished `sers extract` with status -15, 130 ("interrupted; rerun the same
    command to resume", of a complete cache) or 1 ("Aborted!"): benchmarks/exit_status.py measured 6 of
    8 such runs (issue 24 item 9). Now it ends the process at once, with status 0. Commands call this
    (by :func:`echo_result`) before printing, the group once more when the command returns. What is
    printed so far is flushed first; an output stream that cannot take it (a closed pipe) is let go, so
    that the interpreter's own flush at exit cannot fail either (status 120)."""
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except (OSError, ValueError):
            setattr(sys, name, open(os.devnull, "w"))
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_finished)


def _exit_finished(signum, frame) -> None:
    for stream in (sys.stdout, sys.stderr):  # the result line, if the signal came as it was printed
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a write the signal interrupted; the work itself is done
            pass
    os._exit(0)  # every output is written and closed: the teardown has nothing left to do for the user


def _set_debug(ctx, param, value):
    if value:
        os.environ["SERS_DEBUG"] = "1"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sers")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the full traceback of an error (same as SERS_DEBUG=1).")
def main():
    """Cross-lingual speech emotion recognition by layer anchoring.

    \b
    Typical session:
      sers extract --model microsoft/wavlm-large --manifest en.csv --out en.zarr   # GPU box
      sers similarity en.zarr zh.zarr -o sim/                                       # CPU from here
      sers anchor sim/similarity.json -o anchors.json
      sers train --source en.zarr --target zh.zarr --method last,lam --anchors anchors.json -o runs/
    """


# A range longer than this is a typo (no model has so many layers); expanding 0-100000000 would
# take a gigabyte before any check could refuse it.
MAX_RANGE = 10_000


def parse_layers(text: str | None, most: int = MAX_RANGE) -> list[int] | None:
    """'0,6,12' or '3-5,9' -> [0, 6, 12] / [3, 4, 5, 9]; None/'' -> None. More than ``most`` numbers,
    or a range that ends before it starts (5-3), is a usage error."""
    if text is None or text.strip() == "":
        return None
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected layer numbers like 0,6,12 or 3-5")
        if hi < lo:
            raise click.BadParameter(f"{text!r}: the range {part} ends before it starts")
        if len(layers) + hi - lo + 1 > most:
            raise click.BadParameter(f"{text!r}: {len(layers) + hi - lo + 1} numbers, at most {most}")
        layers.extend(range(lo, hi + 1))
    return layers


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,7' -> [0, 1, 2, 3, 4] / [0, 7]; at most MAX_SEEDS of them."""
    from sers.pipeline.sweep import MAX_SEEDS

    try:
        return parse_layers(text, most=MAX_SEEDS) or [0]
    except click.BadParameter as exc:
        message = exc.message.replace("expected layer numbers like 0,6,12 or 3-5", "expected seeds like 0-4 or 0,7")
        if "at most" in message:
            message += " seeds (each trains every method)"
        raise click.BadParameter(message, param_hint="--seeds") from None


def option_set(*options):
    """One decorator applying several click options in the order given (options shared by commands)."""
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def speaker_norm_option(command):
    """--speaker-norm, shared by `sers similarity`, `sers anchor` and `sers train` (they must read alike)."""
    from sers.cli.choices import SPEAKER_NORMS, Choices

    return click.option(
        "--speaker-norm", type=Choices(SPEAKER_NORMS), default="auto", show_default=True,
        help="Standardise each speaker's features by that speaker's own statistics (label-free; needs a "
             "speaker for every utterance and several utterances per speaker). auto: when every utterance "
             "has a speaker (pooled utterances, frames and vowel segments alike, each by its utterance's "
             "speaker's statistics); on: insist; off: never.")(command)


def alignment_options(required: bool):
    """Options naming phone alignments and a vowel map, shared by `sers extract` and `sers segments`."""
    from sers.cli.choices import ALIGNMENT_FORMATS, Choices

    return option_set(
        click.option("--alignments", type=click.Path(exists=True), required=required,
                     help="Phone alignments: a folder of TextGrids (<utterance id or audio file name>.TextGrid, "
                          "e.g. from MFA) or one Kaldi CTM file. Stores the mean of every layer over each vowel."),
        click.option("--alignment-format", type=Choices(ALIGNMENT_FORMATS),
                     help="Format of --alignments [default: ctm for a *.ctm file, else textgrid]."),
        click.option("--phone-tier", default="phones", show_default=True,
                     help="TextGrid tier holding the phones (MFA's '<speaker> - phones' is found too)."),
        click.option("--vowel-map", metavar="en-arpabet|en-ipa|cmn-pinyin|cmn-ipa|es-ipa|FILE.json",
                     help="How phones map to the shared vowel classes a e i o u (needed with --alignments); "
                          'a JSON file is {"phone": "class" or null}.'),
    )


class _OldSpelling(click.Argument):
    """A positional output of earlier releases, still accepted and left out of the usage line."""

    def get_usage_pieces(self, ctx) -> list[str]:
        return []


def output_options(*, file_okay: bool = True, dir_okay: bool = True, help: str):
    """`-o/--out OUT`, every writing command's spelling of its output, and the positional OUT of
    earlier releases kept as a hidden alias (`old_out`); :func:`output` picks whichever was given."""
    return option_set(
        click.option("-o", "--out", "out", type=click.Path(file_okay=file_okay, dir_okay=dir_okay), help=help),
        click.argument("old_out", cls=_OldSpelling, required=False,
                       type=click.Path(file_okay=file_okay, dir_okay=dir_okay)))


def output(out: str | None, old_out: str | None) -> str:
    """The output path given as -o/--out or, in the spelling of earlier releases, positionally."""
    if out and old_out:
        raise click.UsageError(f"the output is given twice ({old_out} and -o {out}): give it once, as -o OUT")
    if not (out or old_out):
        raise click.UsageError("Missing option '-o' / '--out'.")
    if old_out:
        log(f"note: the output as a positional argument is the old spelling; write -o {old_out}")
    return out or old_out


def log(line: str) -> None:
    """A progress or log line: stderr, so that stdout holds only results."""
    click.echo(line, err=True)


# The commands register themselves on `main` (imported last: they import `main` from here).
from sers.cli import cache, extract, models, report, similarity, synth, train  # noqa: E402,F401
