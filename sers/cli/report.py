"""`sers report` (:mod:`sers.pipeline.report`) and `sers demo` (:mod:`sers.pipeline.demo`)."""
from __future__ import annotations

from pathlib import Path

import click

from sers.cli import main
from sers.cli.config import config_option


@main.command()
@config_option("report", example='quiet = true')
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--similarity", "similarity_dir", type=click.Path(exists=True),
              help="Folder written by `sers similarity` (or its similarity.json); default: the one anchors.json names.")
@click.option("--anchors", type=click.Path(exists=True, dir_okay=False),
              help="anchors.json from `sers anchor`, marked on the similarity curves.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="HTML page to write; its Markdown twin (.md) and figures (<name>_files/) go beside it.")
@click.option("--overwrite", is_flag=True, help="Replace the page and its twin if they exist (otherwise refused).")
@click.option("--quiet", is_flag=True, help="Print nothing.")
def report(runs_dir, similarity_dir, anchors, out, overwrite, quiet):
    """Write a one-page report of a training sweep: HTML and a Markdown twin.

    Shows the caches, the similarity per layer with the anchors marked, the results
    table (method x target UAR mean +- std over seeds, macro-F1, source-dev UAR),
    confusion matrices, the commands and the versions. The HTML is self-contained
    (figures embedded, no scripts, nothing fetched): mail it or attach it as it is.

    \b
    Example:
      sers report runs/ --similarity sim/ --anchors anchors.json -o report.html
    """
    from sers.pipeline.report import write_report

    result = write_report(runs_dir, out, similarity_dir=similarity_dir, anchors=anchors, overwrite=overwrite)
    if not quiet:
        click.echo(result.summary())


@main.command()
@click.option("-o", "--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the corpus, caches, runs and report.")
@click.option("--model", help="A pretrained model to use instead (hub id or folder), e.g. microsoft/wavlm-base-plus.")
@click.option("--random-model", is_flag=True, help="Use the random-weight stand-in even if Whisper base or tiny.en is installed.")
@click.option("--utterances-per-language", type=click.IntRange(min=24), default=200, show_default=True,
              help="Generated utterances per language (split by speaker into train/dev/test).")
@click.option("--seeds", default="0-2", show_default=True, help="Seeds for every method.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
def demo(out_dir, model, random_model, utterances_per_language, seeds, epochs):
    """Run the whole pipeline on a generated bilingual corpus, printing each command.

    Synthesises English and Mandarin emotional speech (espeak-ng; made-up languages without
    espeakng-loader), extracts every layer of a speech model (Whisper on the frames of the audio
    only, --whisper-input trimmed), compares the languages layer by layer, picks anchors, trains
    last / wsum / coral / lam / lam-gl over seeds at sers's defaults, and writes a report. Each
    step is printed as the `sers` command that runs it, so you can repeat it on your own corpora.

    \b
    Example:
      sers demo
      sers demo --model microsoft/wavlm-base-plus --out demo_wavlm
    """
    import time

    from sers.pipeline.demo import choose_model, demo_steps

    started = time.perf_counter()
    chosen = choose_model(Path(out_dir), model=model, random_model=random_model)
    click.echo(f"model: {chosen.description}")
    click.echo("results on a generated corpus are a demonstration of the pipeline, not a benchmark\n")
    if chosen.whisper:
        click.echo("Whisper input: trimmed to the frames of the audio (--whisper-input trimmed), not padded to "
                   "30 s: several times faster on a CPU (docs/benchmarks/extract.md)")
    steps = demo_steps(out_dir, chosen.path, utterances_per_language=utterances_per_language, seeds=seeds,
                       epochs=epochs, whisper_input="trimmed" if chosen.whisper else None)
    for number, step in enumerate(steps, 1):
        click.secho(f"[{number}/{len(steps)}] {step.what}", bold=True)
        click.echo(f"$ {step.command_line()}")
        status = main.main(step.argv, prog_name="sers", standalone_mode=False)
        if isinstance(status, int) and status != 0:  # the step printed its own error
            raise SystemExit(status)
        click.echo()
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s; open {Path(out_dir) / 'report.html'}")
