"""`sers synth` (:mod:`sers.synth`): a generated multilingual emotional speech corpus."""
from __future__ import annotations

import click

from sers.cli import log, main, output, output_options
from sers.cli.choices import SYNTH_ENGINES, Choices


@main.command("synth")
@output_options(file_okay=False, help="Folder to write the corpus into.")
@click.option("--engine", type=Choices(SYNTH_ENGINES), default="auto",
              show_default=True,
              help="espeak: real synthesised speech (espeak-ng from the espeakng-loader package); "
                   "source-filter: made-up languages, no extra package; auto: espeak when installed.")
@click.option("--languages", default="en,zh", show_default=True,
              help="Comma-separated. espeak: en (English), zh (Mandarin), es (Spanish); "
                   "source-filter: en (English-like), zh (Mandarin-like, tonal).")
@click.option("--utterances-per-language", "-n", type=click.IntRange(min=1), default=120,
              show_default=True)
@click.option("--speakers-per-language", type=click.IntRange(min=3), default=8, show_default=True,
              help="Split about 60/20/20 into train/dev/test speakers.")
@click.option("--min-seconds", type=float, default=1.5, show_default=True,
              help="source-filter only (espeak's durations follow its sentences, about 1.7-5.8 s).")
@click.option("--max-seconds", type=float, default=4.0, show_default=True, help="source-filter only.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same seed, same corpus, byte for byte.")
@click.option("--sample-rate", type=click.IntRange(min=8000), default=16000, show_default=True)
@click.option("--overwrite", is_flag=True, help="Regenerate languages already in OUT (their old files go).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth_command(out, old_out, engine, languages, utterances_per_language, speakers_per_language,
                  min_seconds, max_seconds, seed, sample_rate, overwrite, quiet):
    """Generate a small multilingual emotional speech corpus (no download needed).

    Four emotions (N, H, A, S) realised by prosody, by speakers split into
    train/dev/test. --engine espeak reads sentences of real English, Mandarin
    (Hanzi) and Spanish with espeak-ng voices; --engine source-filter speaks
    made-up words of an English-like and a Mandarin-like language. Writes
    OUT_DIR/<lang>/wav/*.wav (16-bit mono), OUT_DIR/<lang>/textgrid/*.TextGrid
    ("words" and "phones" tiers) and OUT_DIR/<lang>/manifest.csv (id, path,
    label, split, speaker, language). Design and limits: docs/synth.md.

    \b
    Example:
      sers synth -o corpus/ --engine espeak --languages en,zh -n 300 --seed 0
      sers extract --model MODEL --manifest corpus/en/manifest.csv --out en.zarr
    """
    from tqdm import tqdm

    from sers.synth import choose_engine, corpus_summary, synthesize_corpus, synthesize_espeak_corpus

    out_dir = output(out, old_out)
    engine, reason = choose_engine(engine)
    log(f"engine: {engine} ({reason})")
    codes = [code.strip() for code in languages.split(",") if code.strip()]
    with tqdm(total=len(codes) * utterances_per_language, unit="utt", desc="synth",
              disable=True if quiet else None) as bar:
        if engine == "espeak":
            manifests = synthesize_espeak_corpus(
                out_dir, languages=codes, utterances_per_language=utterances_per_language,
                speakers_per_language=speakers_per_language, seed=seed, sample_rate=sample_rate,
                progress=bar.update, overwrite=overwrite)
        else:
            manifests = synthesize_corpus(
                out_dir, languages=codes, utterances_per_language=utterances_per_language,
                speakers_per_language=speakers_per_language, min_seconds=min_seconds,
                max_seconds=max_seconds, seed=seed, sample_rate=sample_rate, progress=bar.update, overwrite=overwrite)
    click.echo(corpus_summary(manifests))
