"""`sers similarity` and `sers anchor` (:mod:`sers.pipeline.similarity`, :mod:`sers.pipeline.anchor`)."""
from __future__ import annotations

import click

from sers.cli import echo_result, main, option_set, parse_layers, speaker_norm_option
from sers.cli.choices import LEVELS, MEASURE_NAMES, MEASURES, STRATEGIES, Choices, ListedHelp, listing
from sers.cli.config import config_option

LABEL_AWARE = "sers.analysis.measures:LABEL_AWARE"

# Options shared by `sers similarity` and `sers anchor SOURCE TARGET`.
similarity_options = option_set(
    click.option("--source-split", default="train", show_default=True, help="Source split compared."),
    click.option("--target-split", default="train", show_default=True,
                 help="Target split compared, unlabelled (its labels are never read)."),
    click.option("--target-labels", metavar="SPLIT", cls=ListedHelp, listed={"{label-aware}": listing(LABEL_AWARE, last=" and ")},
                 help="A labelled target analysis split (not test) for {label-aware}; "
                      "without it those are skipped and no target label is read."),
    click.option("--level", type=Choices(LEVELS), default="utterance",
                 show_default=True, help="Pooled utterances, or vowel segments (caches with segments: "
                                         "extract --alignments or `sers segments`); centroids per emotion x vowel."),
    click.option("--max-utterances", type=click.IntRange(min=2),
                 help="Compare a seeded random sample of at most this many utterances (segments) per split."),
    click.option("--layers", help="Layers to compare, e.g. 0-12 or 1,6,12 (default: all)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample and the folds."),
    speaker_norm_option,
)
writing_options = option_set(
    click.option("--overwrite", is_flag=True, help="Replace the outputs already there (otherwise they are refused)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
)


@main.command()
@config_option("similarity", example='max-utterances = 20000')
@click.argument("source", type=click.Path())
@click.argument("target", type=click.Path())
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for similarity.json, similarity.csv and the PNG plots.")
@click.option("--measures", default="all", show_default=True, cls=ListedHelp,
              listed={"{measures}": listing(MEASURE_NAMES)}, help="Comma list of {measures}.")
@similarity_options
@writing_options
def similarity(source, target, out_dir, measures, layers, overwrite, quiet, **options):
    """How alike source and target features are at each layer.

    Label-free: coral, mmd, domain (with proxy A-distance). Label-aware, with
    --target-labels: centroid-cos and cka (also source layer x target layer
    heatmaps) and probe (target UAR of a source-trained linear probe).

    \b
    Example:
      sers similarity en.zarr zh.zarr -o sim/
      sers similarity en.zarr zh.zarr -o sim/ --target-labels dev --max-utterances 5000
    """
    from sers.pipeline.similarity import compute_similarity

    wanted = [m.strip() for m in measures.split(",") if m.strip()]
    result = compute_similarity(source, target, out_dir, measures_wanted=wanted, layers=parse_layers(layers),
                                progress=not quiet, overwrite=overwrite, **options)
    echo_result(result)


@main.command()
@config_option("anchor", example='exclude = [0]')
@click.argument("inputs", nargs=-1, required=True, type=click.Path(), metavar="SIMILARITY_JSON | SOURCE TARGET")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="anchors.json to write.")
@click.option("--measure", type=Choices(MEASURES),
              help="Measure to rank layers by (default: the first available of coral, mmd, domain).")
@click.option("--strategy", type=Choices(STRATEGIES), default="both", show_default=True,
              help="both: the K best single layers (for lam) and the best contiguous groups (for lam-gl) of "
                   "every --group-sizes x --group-counts, which sers train chooses among without target "
                   "labels; topk: the single layers only; group: --group-size x --groups only.")
@click.option("--k", type=click.IntRange(min=1), default=3, show_default=True, help="Layers for topk.")
@click.option("--group-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="Consecutive layers per group.")
@click.option("--groups", "n_groups", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of non-overlapping groups.")
@click.option("--group-sizes", default="2,3", show_default=True,
              help="both: the group sizes lam-gl's candidates take.")
@click.option("--group-counts", default="1,2", show_default=True,
              help="both: the numbers of non-overlapping groups lam-gl's candidates take.")
@click.option("--exclude", help="Layers never chosen, e.g. 0, 0,24 or 0-2 (each a layer of the similarity).")
@click.option("--similarity-dir", type=click.Path(file_okay=False),
              help="With two caches: where the similarity goes (default: OUT's folder/similarity).")
@similarity_options
@writing_options
def anchor(inputs, out, measure, strategy, k, group_size, n_groups, group_sizes, group_counts, exclude, similarity_dir,
           layers, overwrite,
           quiet, **options):
    """Choose anchor layers (or layer groups) from a similarity table.

    Give a similarity.json, or a source and a target cache to compute the
    similarity first (the similarity options apply then).

    \b
    Example:
      sers anchor sim/similarity.json -o anchors.json --k 3 --exclude 0
      sers anchor sim/similarity.json -o anchors.json --strategy group --group-size 3 --groups 2
      sers anchor en.zarr zh.zarr -o anchors.json --measure coral
    """
    from sers.pipeline.anchor import anchor as run_anchor

    anchors = run_anchor(inputs, out, measure=measure, strategy=strategy, k=k, group_size=group_size,
                         n_groups=n_groups, group_sizes=parse_layers(group_sizes) or (),
                         group_counts=parse_layers(group_counts) or (), exclude=parse_layers(exclude), similarity_dir=similarity_dir,
                         layers=parse_layers(layers), progress=not quiet, overwrite=overwrite, **options)
    echo_result(anchors)
