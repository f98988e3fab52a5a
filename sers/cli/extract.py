"""`sers extract` (:mod:`sers.pipeline.extract`): run a model once, cache every layer."""
from __future__ import annotations

import click

from sers.cli import alignment_options, echo_result, log, main, parse_layers
from sers.cli.choices import CORPUS_READERS, DTYPES, WHISPER_INPUTS, Choices, ListedHelp, corpus_formats
from sers.cli.config import config_option


def _batch_seconds(text: str):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise click.BadParameter(f"{text!r}: give a positive number of seconds or auto", param_hint="--batch-seconds")
    return value


@main.command()
@config_option("extract", example='dtype = "bfloat16"')
@click.option("--model", required=True, help="Hugging Face hub id or local folder (transformers or CTranslate2 Whisper).")
@click.option("--manifest", "manifest", required=True, type=click.Path(exists=True),
              help="CSV/TSV/JSONL manifest, or a corpus root with --format msp-podcast/biic-podcast, a lhotse "
                   "CutSet file or a folder of cuts_<split>.jsonl.gz (--format lhotse), a datasets save_to_disk folder "
                   "or Parquet file/folder (--format hf-datasets).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Cache to write: *.zarr (default choice) or *.h5.")
@click.option("--format", "corpus_format",
              type=Choices(CORPUS_READERS), default="manifest", show_default=True, cls=ListedHelp,
              listed={"{formats}": corpus_formats}, help="How to read --manifest; {formats}.")
@click.option("--audio-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative manifest paths resolve against (default: the manifest's folder); "
                   "manifests only (podcast layouts, lhotse and hf-datasets name their audio themselves).")
@click.option("--language", help="Language to record where the manifest has none (e.g. en, zh; names such as "
                                 "English become ISO codes, as the manifest's own languages do).")
@click.option("--split", "split", metavar="NAME",
              help="The split of every utterance the manifest gives none, e.g. train for lhotse's "
                   "cuts_train.jsonl.gz. Not a filter: an utterance the manifest puts in another split is refused.")
@click.option("--revision", help="Model revision (branch, tag or commit) to pin.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=Choices(DTYPES), default="float32",
              show_default=True, help="Compute precision (autocast); features are stored as float32/float16.")
@click.option("--whisper-input", type=Choices(WHISPER_INPUTS),
              help="Whisper only: each 30 s window trimmed to the frames covering the audio [the default: a 3 s "
                   "utterance costs a fraction, and the features transfer as well, docs/benchmarks/transfer.md], "
                   "or padded to 30 s as Whisper was trained (the last layers' features differ, "
                   "docs/benchmarks/extract.md). Caches of different inputs are never mixed.")
@click.option("--batch-seconds", callback=lambda ctx, param, value: _batch_seconds(value), default="200",
              show_default=True,
              help="Most seconds of audio the model computes over per batch, padding included (a padded "
                   "Whisper window counts 30 s); utterances are sorted by length, on CPU as on GPU. auto: on a "
                   "GPU, as many as fit 70% of its free memory (one probe batch measures it); on a CPU, 200.")
@click.option("--frame-layers", default="none", show_default=True,
              help="Layers whose frames are stored: none, all, or a list like 0,6,12 or 3-5. Pooled means of "
                   "every layer are always stored and are all most methods read; frames (for --features frames "
                   "and `sers segments`) of every layer are ~80x the audio's size for a large model, so name "
                   "the layers you need. The size estimate is printed before anything is written.")
@click.option("--frame-stride", type=int, default=1, show_default=True,
              help="Store the mean of every K frames (K=2 halves the frame storage).")
@click.option("--pool", default="mean", show_default=True, help="Pooled statistics: mean or mean,std.")
@click.option("--shard", help="Process share I of N (I/N, e.g. 0/4); default: RANK/WORLD_SIZE when set.")
@click.option("--workers", type=int, default=2, show_default=True, help="Audio decoding processes (0: decode in-process).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Record longer utterances as errors instead of running out of memory (attention memory grows "
                   "with the square of the length); not applied to Whisper, which reads 30 s windows.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable utterance instead of recording it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing cache instead of resuming it.")
@click.option("--no-space-check", is_flag=True,
              help="Go on where the free space looks too small for the cache or for a batch (the estimates are "
                   "before compression); a disk that does fill up stops the run with every finished utterance kept.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@alignment_options(required=False)
def extract(model, manifest, out, corpus_format, audio_root, language, split, revision, device, dtype, whisper_input,
            batch_seconds, frame_layers, frame_stride, pool, shard, workers, max_seconds, strict, overwrite,
            no_space_check, quiet, alignments, alignment_format, phone_tier, vowel_map):
    """Run a pretrained speech model once and cache every layer's features.

    Stores, for every utterance, the mean (and --pool std) over frames of every hidden
    state (layer 0 = embedding output), and the frames of --frame-layers. Rerun the same
    command after a crash or Ctrl-C to resume; --overwrite starts again.

    \b
    Example:
      sers extract --model microsoft/wavlm-large --manifest en.csv --out en.zarr \\
          --device cuda --dtype bfloat16 --frame-layers 0,6,12,24
      sers extract --model microsoft/wavlm-large --format msp-podcast \\
          --manifest /data/MSP-Podcast --out msp.zarr --shard 0/4
      sers extract --model microsoft/wavlm-large --manifest en.csv --out en.zarr \\
          --alignments mfa_textgrids/ --vowel-map en-arpabet
      sers extract --model "$(sers models whisper-base)" --manifest zh.csv --out zh.zarr \\
          --whisper-input trimmed
    """
    from sers.inputs.corpora import read_corpus
    from sers.pipeline.extract import extract as run_extract

    utterances = read_corpus(manifest, format=corpus_format, audio_root=audio_root, language=language,
                             split=split, log=log)
    layers = frame_layers if frame_layers in ("all", "none") else parse_layers(frame_layers)
    summary = run_extract(utterances, model, out, revision=revision, device=device, dtype=dtype,
                          batch_seconds=batch_seconds, frame_layers=layers, frame_stride=frame_stride,
                          pool_stats=[p.strip() for p in pool.split(",") if p.strip()], shard=shard,
                          workers=workers, strict=strict, overwrite=overwrite, progress=not quiet,
                          log=log, alignments=alignments, alignment_format=alignment_format,
                          phone_tier=phone_tier, vowel_map=vowel_map, max_seconds=max_seconds,
                          whisper_input=whisper_input, space_check=not no_space_check)
    echo_result(summary)
