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

@main.command()
@click.option("--model", required=True, help="Hugging Face hub id or local folder (transformers or CTranslate2 Whisper).")
@click.option("--manifest", "manifest", required=True, type=click.Path(exists=True),
              help="CSV/TSV/JSONL manifest, or a corpus root with --format msp-podcast/biic-podcast.")
@click.option("--out", required=True, type=click.Path(), help="Cache to write: *.zarr (default choice) or *.h5.")
@click.option("--format", "corpus_format", type=click.Choice(["manifest", "msp-podcast", "biic-podcast"]),
              default="manifest", show_default=True, help="How to read --manifest.")
@click.option("--audio-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative manifest paths resolve against (default: the manifest's folder).")
@click.option("--language", help="Language to record where the manifest has none (e.g. en, zh).")
@click.option("--revision", help="Model revision (branch, tag or commit) to pin.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32",
              show_default=True, help="Compute precision (autocast); features are stored as float32/float16.")
@click.option("--batch-seconds", type=float, default=200.0, show_default=True,
              help="Most seconds of padded audio per batch (utterances are sorted by length).")
@click.option("--frame-layers", default="all", show_default=True,
              help="Layers whose frames are stored: all, none, or a list like 0,6,12 or 3-5.")
@click.option("--frame-stride", type=int, default=1, show_default=True,
              help="Store the mean of every K frames (K=2 halves the frame storage).")
@click.option("--pool", default="mean", show_default=True, help="Pooled statistics: mean or mean,std.")
@click.option("--shard", help="Process share I of N (I/N, e.g. 0/4); default: RANK/WORLD_SIZE when set.")
@click.option("--workers", type=int, default=2, show_default=True, help="Audio decoding processes (0: decode in-process).")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable utterance instead of recording it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing cache instead of resuming it.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract(model, manifest, out, corpus_format, audio_root, language, revision, device, dtype,
            batch_seconds, frame_layers, frame_stride, pool, shard, workers, strict, overwrite, quiet):
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
    """
    from sers.corpora import read_corpus
    from sers.pipeline.extract import extract as run_extract

    utterances = read_corpus(manifest, format=corpus_format, audio_root=audio_root, language=language,
                             log=click.echo)
    layers = frame_layers if frame_layers in ("all", "none") else parse_layers(frame_layers)
    summary = run_extract(utterances, model, out, revision=revision, device=device, dtype=dtype,
                          batch_seconds=batch_seconds, frame_layers=layers, frame_stride=frame_stride,
                          pool_stats=[p.strip() for p in pool.split(",") if p.strip()], shard=shard,
                          workers=workers, strict=strict, overwrite=overwrite, progress=not quiet,
                          log=click.echo)
    click.echo(summary.line())

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


@main.group("cache")
def cache_group():
    """Merge shards, import features computed elsewhere."""


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

    sers.cache.merge(out, shards, overwrite=overwrite)
    with sers.cache.open(out) as merged:
        click.echo(f"merged {len(shards)} shards: {len(merged.utterances)} utterances, "
                   f"{len(merged.errors)} errors -> {out}")


@cache_group.command("import")
@click.argument("npz", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path())
@click.option("--model-id", required=True, help="Name of the model the features came from.")
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--frame-rate", type=float, default=50.0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def cache_import(npz, out, model_id, sample_rate, frame_rate, overwrite):
    """Make a cache from pooled features computed elsewhere (s3prl, EmoBox, your script).

    The .npz holds `pooled` (or `pooled_mean` [+ `pooled_std`]) of shape (layers,
    utterances, dim) and 1-D arrays `id` [, label, split, speaker, language, duration].

    \b
    Example:
      sers cache import wavlm_features.npz en.zarr --model-id microsoft/wavlm-large
    """
    import sers.cache

    sers.cache.import_npz(npz, out, overwrite=overwrite, model_id=model_id, sample_rate=sample_rate,
                          frame_rate=frame_rate)
    with sers.cache.open(out) as cache:
        click.echo(f"imported {len(cache.utterances)} utterances, {cache.num_layers} layers x "
                   f"{cache.hidden_size} -> {out}")

# --- synth (sers.synth) ---

# --- similarity, anchor (sers.pipeline.similarity / sers.pipeline.anchor) ---

# --- train, evaluate, predict (sers.pipeline.train / sers.pipeline.evaluate) ---

# --- models convert (sers.ct2) ---

# --- report, demo (sers.pipeline.report / sers.pipeline.demo) ---


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
