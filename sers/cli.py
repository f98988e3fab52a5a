"""The `sers` command line: one command per stage, each a thin wrapper.

Every command parses its options, calls one plain function in `sers.pipeline`
(or another module), and prints. Exit status: 0 success, 1 bad input or data
(a one-line `error: ...`), 2 usage error (click), 130 interrupted.
"""
from __future__ import annotations

import sys

import click

from sers import __version__
from sers.errors import SersError


class _Group(click.Group):
    """Turn SersError into `error: message` and exit 1, with no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SersError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sers")
def main():
    """Cross-lingual speech emotion recognition by layer anchoring.

    \b
    Typical session:
      sers extract --model microsoft/wavlm-large --manifest en.csv --out en.zarr   # GPU box
      sers similarity en.zarr zh.zarr -o sim/                                       # CPU from here
      sers anchor sim/similarity.json -o anchors.json
      sers train --source en.zarr --target zh.zarr --method last,lam --anchors anchors.json -o runs/
    """


def parse_layers(text: str | None) -> list[int] | None:
    """'0,6,12' or '3-5,9' -> [0, 6, 12] / [3, 4, 5, 9]; None/'' -> None."""
    if text is None or text.strip() == "":
        return None
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected layer numbers like 0,6,12 or 3-5")
    return layers


# --- extract (sers.pipeline.extract) ---

# --- cache: inspect, cache merge, cache import (sers.pipeline.inspect / sers.cache) ---

# --- synth (sers.synth) ---

# --- similarity, anchor (sers.pipeline.similarity / sers.pipeline.anchor) ---

# --- train, evaluate, predict (sers.pipeline.train / sers.pipeline.evaluate) ---

# --- models convert (sers.ct2) ---

# --- report, demo (sers.pipeline.report / sers.pipeline.demo) ---


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
