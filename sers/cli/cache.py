"""Commands on caches: `sers inspect`, `sers segments`, `sers cache merge | import | export | upgrade`
(:mod:`sers.pipeline.inspect`, :mod:`sers.pipeline.segments`, :mod:`sers.cache`)."""
from __future__ import annotations

from pathlib import Path

import click

from sers.cli import alignment_options, main, output, output_options, parse_layers
from sers.cli.choices import EXPORT_FORMATS, IMPORT_LAYOUTS, Choices


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
@alignment_options(required=True)
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
    """Merge shards; import features computed elsewhere; export them; upgrade old caches."""


@cache_group.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", help="The merged cache to write (*.zarr or *.h5).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", is_flag=True, help="Print nothing.")
def cache_merge(shards, out, overwrite, quiet):
    """Join the per-shard caches of one `sers extract --shard I/N` run.

    \b
    Example:
      sers cache merge en.shard0.zarr en.shard1.zarr en.shard2.zarr en.shard3.zarr -o en.zarr
    """
    import sers.cache

    if out is None:  # earlier releases: sers cache merge OUT SHARD...
        out, shards = output(None, shards[0]), shards[1:]
    for shard in shards:
        if not Path(shard).exists():
            raise click.BadParameter(f"{shard}: no such shard", param_hint="SHARDS")
    if not shards:
        raise click.UsageError("no shard to merge: sers cache merge SHARD... -o OUT")
    result = sers.cache.merge(out, shards, overwrite=overwrite)
    if not quiet:
        click.echo(result.summary())


@cache_group.command("upgrade")
@click.argument("cache", type=click.Path(exists=True))
@click.option("--quiet", is_flag=True, help="Print nothing.")
def cache_upgrade(cache, quiet):
    """Add what a finished cache of an older sers lacks for readers without sers.

    zarr: the axis names and consolidated metadata (xr.open_zarr opens it without a
    warning); HDF5: dimension scales (xarray's h5netcdf engine names the axes as in
    zarr, not phony_dim_*). A cache that has them is left as it is; one being written,
    or not finished, is refused. Prints one line saying what it did.

    \b
    Example:
      sers cache upgrade en.zarr
      sers cache upgrade en.h5
    """
    import sers.cache

    summary = sers.cache.upgrade(cache).summary()
    if not quiet:
        click.echo(summary)


@cache_group.command("import")
@click.argument("source", type=click.Path(exists=True))
@output_options(dir_okay=True, help="The cache to write (*.zarr or *.h5).")
@click.option("--model-id", required=True, help="Name of the model the features came from.")
@click.option("--layout", type=Choices(IMPORT_LAYOUTS),
              help="Axes of an .npz's pooled array when both first axes have one row per id: nld = "
                   "(utterances, layers, dim), lnd = (layers, utterances, dim). Default: told by the length of id.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Folder import: a manifest giving label, split, speaker, language by id (the feature file's "
                   "name); an 'id' column is enough, no 'path' needed.")
@click.option("--split", "split", metavar="NAME",
              help="The split of every utterance the .npz's split array or the --manifest gives none (every "
                   "utterance of a folder without --manifest). Not a filter: an utterance in another split is refused.")
@click.option("--pool", default="mean", show_default=True,
              help="Folder import of (layers, frames, dim) hidden states: mean or mean,std.")
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--frame-rate", type=float, default=50.0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", is_flag=True, help="Print nothing.")
def cache_import(source, out, old_out, model_id, layout, manifest, split, pool, sample_rate, frame_rate, overwrite,
                 quiet):
    """Make a cache from features computed elsewhere (s3prl, EmoBox, your script).

    SOURCE is an .npz holding `pooled` (or `pooled_mean` [+ `pooled_std`]) of shape
    (utterances, layers, dim) or (layers, utterances, dim) and 1-D arrays `id` [, label,
    split, speaker, language, duration]; or a folder of one .npy/.pt file per utterance,
    (layers, dim) pooled or (layers, frames, dim) hidden states, named by utterance id.

    \b
    Example:
      sers cache import wavlm_features.npz -o en.zarr --model-id microsoft/wavlm-large
      sers cache import emobox_feats/ -o en.zarr --model-id wavlm-large --manifest en.jsonl
    """
    import sers.cache

    out = output(out, old_out)
    # languages become ISO codes as in `sers extract`; the note on unknown ones is printed unless --quiet
    attrs = dict(overwrite=overwrite, model_id=model_id, sample_rate=sample_rate, frame_rate=frame_rate,
                 split=split, log=None if quiet else click.echo)
    if Path(source).is_dir():
        from sers.inputs.manifest import read_manifest

        # rows are matched by id: the audio the features came from need not be named, nor exist here
        rows = read_manifest(manifest, require_path=False) if manifest else None
        result = sers.cache.import_folder(source, out, manifest_rows=rows, manifest_name=manifest,
                                          pool_stats=pool.split(","), **attrs)
    else:
        result = sers.cache.import_npz(source, out, layout=layout, **attrs)
    if not quiet:
        click.echo(result.summary())


@cache_group.command("export")
@click.argument("cache", type=click.Path(exists=True))
@output_options(help="The file to write: *.npz or *.parquet; a folder with --format hf-datasets.")
@click.option("--format", "export_format", type=Choices(EXPORT_FORMATS),
              help="What to write (default: told by OUT's suffix); hf-datasets: a folder that "
                   "datasets.load_from_disk opens.")
@click.option("--split", help="Only this split (default: every good utterance).")
@click.option("--layers", help="Only these layers, e.g. 0,12,24 or 3-5 (default: all).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@click.option("--quiet", is_flag=True, help="Print nothing.")
def cache_export(cache, out, old_out, export_format, split, layers, overwrite, quiet):
    """Write a cache's pooled features and utterance columns to .npz, Parquet or a datasets folder.

    OUT.npz holds `pooled_<stat>` (layers, utterances, dim), `layers` and the columns, as
    `sers cache import` reads it; OUT.parquet one row per utterance with a list column
    `<stat>_layer_<l>` per layer (needs pyarrow); --format hf-datasets the same columns as a
    Hugging Face dataset folder (`datasets.load_from_disk(OUT)`; needs datasets).

    \b
    Example:
      sers cache export en.zarr -o en.parquet --split train --layers 0,6,12
      sers cache export en.zarr -o en_features --format hf-datasets --layers 12
    """
    import sers.cache

    out = output(out, old_out)
    with sers.cache.open(cache) as reader:
        reader.require_complete()
        result = sers.cache.export(reader, out, split=split, layers=parse_layers(layers), overwrite=overwrite,
                                   format=export_format)
    if not quiet:
        click.echo(result.summary())
