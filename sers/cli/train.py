"""`sers train`, `sers evaluate`, `sers predict` (:mod:`sers.pipeline.train`, :mod:`sers.pipeline.evaluate`)."""
from __future__ import annotations

from pathlib import Path

import click

from sers.cli import echo_result, log, main, parse_layers, parse_seeds, speaker_norm_option
from sers.cli.choices import (ALIGN_LEVELS, BACKENDS, CORAL_SCALES, FEATURES, GROUP_WEIGHTS, METHODS, NORMALISATIONS,
                              SELECT_CRITERIA, STATS, VOWEL_METHODS, Choices, ListedHelp, listing)
from sers.cli.config import config_option, resolved


def _parse_anchors(text):
    """An anchors.json path, layers '3,5,7', or groups '3-5;8-10' (one group per ';')."""
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
@config_option("train", example='epochs = 50')
@click.option("--source", required=True, type=click.Path(exists=True), help="Labelled source-language cache.")
@click.option("--target", required=True, type=click.Path(exists=True), help="Target-language cache (same model).")
@click.option("--method", "methods", default="last,anchors-only,lam", show_default=True,
              cls=ListedHelp, listed={"{methods}": listing(METHODS), "{vowel methods}": listing(VOWEL_METHODS, "+vowel")},
              help="Comma list of: {methods} (and {vowel methods}). Each aligning method's ablation "
                   "(lam: anchors-only, lam-gl: groups-only, coral/dann: last) is added unless --no-ablations.")
@click.option("--no-ablations", is_flag=True,
              help="Do not add the no-alignment ablation of each aligning method to --method.")
@click.option("--anchors", "anchors", multiple=True,
              help="anchors.json from `sers anchor`, or layers 3,5,7, or groups 3-5;8-10. Give several "
                   "anchors.json files (repeat the option) to let --select choose among them.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Runs folder.")
@click.option("--seeds", default="0-4", show_default=True, help="Seeds, e.g. 0-4 or 0,7.")
@click.option("--lambda", "lambda_", default="0,0.3,1,3", show_default=True,
              help="Weight of the alignment term (CORAL; gradient-reversal strength for dann). A comma list "
                   "trains each as a candidate and keeps, per seed, the one --select scores best; 0 (no "
                   "alignment) is a candidate by default.")
@click.option("--select", type=Choices(SELECT_CRITERIA), default="source-dev", show_default=True,
              help="How to choose among λ / anchor / group candidates, reading no target label (source-dev had "
                   "the least regret on the transfer benchmark with sers's default anchors, "
                   "docs/benchmarks/selection.md): bnm+source-dev takes per set of layers the λ bnm scores "
                   "best, then the layers by source dev UAR; or one score: source dev UAR "
                   "(source-dev), information maximisation (im), deep embedded validation (dev), soft "
                   "neighbourhood density (snd), batch nuclear norm (bnm), class-AMI (class-ami) or "
                   "importance-weighted validation on the input features (iwcv); see docs/method.md.")
@click.option("--coral-scale", type=Choices(CORAL_SCALES), default="relative", show_default=True,
              help="relative: ||C_s-C_t||²/(||C_s||²+||C_t||²), width- and scale-free (λ=1 acts); "
                   "4d2: Deep CORAL's /(4d²) (about 1e-3 of the cross-entropy).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=512, show_default=True, help="Projection/MLP width.")
@click.option("--dropout", type=float, default=0.2, show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs without a better dev UAR before stopping (0: run all epochs).")
@click.option("--normalize", type=Choices(NORMALISATIONS), default="per-language",
              show_default=True, help="Feature standardisation, label-free (per-language: each corpus by the "
                                      "statistics of its own training split; global: one set for both).")
@click.option("--group-weights", type=Choices(GROUP_WEIGHTS), default="concat", show_default=True,
              help="How lam-gl combines the layers of a group: concatenated (one projection per layer, "
                   "summed), per-layer (one projection and ReLU per layer, averaged), their mean, or "
                   "learned softmax weights. concat has the best source dev UAR (docs/method.md).")
@click.option("--align", type=Choices(ALIGN_LEVELS), default="utterance", show_default=True,
              help="vowel: lam and lam-gl also align each vowel class on the caches' vowel segments "
                   "(runs named lam+vowel; needs caches extracted with --alignments).")
@click.option("--vowel-lambda", type=float, help="Weight of the vowel-level CORAL term [default: --lambda].")
@click.option("--source-train", default="train", show_default=True, help="Source split to train on.")
@click.option("--source-dev", help="Source split for model selection [default: dev, else validation].")
@click.option("--target-train", default="train", show_default=True, help="Target split used unlabelled.")
@click.option("--target-test", default="test", show_default=True, help="Target split to report.")
@click.option("--target-dev", help="Labelled target split for model selection (results marked target-selected).")
@click.option("--stat", default="mean", show_default=True, help="Pooled statistic to read (mean or std).")
@speaker_norm_option
@click.option("--features", type=Choices(FEATURES), default="pooled", show_default=True,
              help="frames: attentive pooling over the cached frames of the needed layers (extract with "
                   "--frame-layers); held in memory as stored (float16).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Runs in parallel.")
@click.option("--backend", type=Choices(BACKENDS), default="loky", show_default=True,
              help="joblib backend for --jobs (dask/ray: pip install 'sers-lam[dask]' / 'sers-lam[ray]').")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-plots", is_flag=True, help="Skip each run's curves.png (curves.csv is always written).")
@click.option("--stacked/--per-run", default=False, show_default=True,
              help="--stacked: train the runs of one architecture (seeds, λ, ablation) as one stacked model, "
                   "with the results each has alone (config.json: trained_by); on 2 CPU cores it was no faster "
                   "(docs/benchmarks/train.md), so one run at a time is the default.")
@click.option("--overwrite", is_flag=True, help="Replace the runs already in -o (otherwise such a folder is refused).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(source, target, methods, no_ablations, anchors, out_dir, seeds, lambda_, select, coral_scale, epochs, batch_size, lr,
          weight_decay,
          hidden, dropout, patience, normalize, group_weights, align, vowel_lambda, source_train, source_dev,
          target_train, target_test, target_dev, stat, speaker_norm, features, jobs, backend, device, no_plots,
          stacked, overwrite, quiet):
    """Train emotion heads on cached features: methods x seeds, one run folder each.

    Source labels train the head; target train data is used unlabelled; target test
    labels are only read after training, to score. Writes OUT/<method>/seed<k>/
    (config.json, metrics.json, predictions.csv, curves.csv/png, model.safetensors)
    and OUT/results.csv, results.md, runs.csv. OUT/sweep.json records every option's
    value and where it came from (command line, --config file, default).

    \b
    Example:
      sers train --source en.zarr --target zh.zarr --method last,wsum,coral,lam \\
          --anchors anchors.json --seeds 0-4 -o runs/ --jobs 2
      sers train --source en.zarr --target zh.zarr --method lam-gl --anchors '3-5;8-10' \\
          --lambda 1 --group-weights per-layer -o runs-gl/
      sers train --source en.zarr --target zh.zarr --method lam,lam-gl --anchors anchors.json \\
          --align vowel --vowel-lambda 100 -o runs-vowel/
      sers train --source en.zarr --target zh.zarr --method last,lam --anchors 3,5,7 \\
          --features frames -o runs-frames/
      sers train --config exp.toml --source en.zarr --target zh.zarr -o runs/ --seeds 0
        # exp.toml: [train] method = ["last", "lam"], anchors = "anchors.json", lambda = [0, 1]
    """
    from sers.pipeline.train import train as run_train

    result = run_train(source, target, methods=[m for m in methods.split(",") if m.strip()],
                      anchors=_anchor_options(anchors), seeds=parse_seeds(seeds), out_dir=out_dir,
                      lambda_=_parse_lambdas(lambda_), select=select, ablations=not no_ablations,
                      coral_scale=coral_scale, hidden=hidden, dropout=dropout, epochs=epochs, batch_size=batch_size,
                      lr=lr, weight_decay=weight_decay, patience=patience, normalize=normalize,
                      group_weights=group_weights, align=align, vowel_lambda=vowel_lambda, device=device,
                      source_train=source_train,
                      source_dev=source_dev, target_train=target_train, target_test=target_test,
                      target_dev=target_dev, stat=stat, speaker_norm=speaker_norm, features=features, jobs=jobs, backend=backend, plots=not no_plots,
                      stacked=stacked, overwrite=overwrite,
                      progress=not quiet,
                      log=log,
                      command=_command_line(click.get_current_context()),
                      record=resolved(click.get_current_context()))
    echo_result(result)


def _applying_a_run(out_option):
    """RUN_DIR CACHE, the output, --split, --stats, --overwrite and --quiet: what evaluate and predict share."""
    def decorate(command):
        for option in reversed([
                click.argument("run_dir", type=click.Path(exists=True, file_okay=False)),
                click.argument("cache", type=click.Path(exists=True)),
                out_option,
                click.option("--split", help="Only this split (default: every utterance)."),
                click.option("--stats", type=Choices(STATS), default="target", show_default=True,
                             help="Per-language runs only: standardise with the run's target or source statistics, "
                                  "or the cache's own."),
                click.option("--overwrite", is_flag=True, help="Replace what an earlier call wrote there."),
                click.option("--quiet", is_flag=True, help="Print nothing (the files are written all the same).")]):
            command = option(command)
        return command
    return decorate


@main.command()
@_applying_a_run(click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
                              help="Folder for metrics.json and predictions.csv "
                                   "[default: RUN_DIR/evaluations/<cache>-<split>]."))
def evaluate(run_dir, cache, split, out_dir, stats, overwrite, quiet):
    """Score a trained run on a cache of the same model (metrics where labels exist).

    \b
    Example:
      sers evaluate runs/lam/seed0 zh.zarr --split test
      sers evaluate runs/lam/seed0 other-corpus.zarr --stats cache -o eval/other
    """
    from sers.pipeline.evaluate import evaluate as run_evaluate

    result = run_evaluate(run_dir, cache, split=split, out_dir=out_dir, stats=stats, overwrite=overwrite)
    echo_result(result, quiet)


@main.command()
@_applying_a_run(click.option("-o", "--out", "out_csv", required=True, type=click.Path(dir_okay=False),
                              help="CSV to write."))
def predict(run_dir, cache, out_csv, split, stats, overwrite, quiet):
    """Write emotion predictions (class and probabilities) for every utterance of a cache.

    \b
    Example:
      sers predict runs/lam/seed0 zh.zarr -o zh-predictions.csv
    """
    from sers.pipeline.evaluate import predict as run_predict

    result = run_predict(run_dir, cache, out_csv, split=split, stats=stats, overwrite=overwrite)
    echo_result(result, quiet)
