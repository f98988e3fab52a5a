"""Shared by the benchmark scripts: machine facts and writing a section of docs/benchmarks/extract.md."""
from __future__ import annotations

import os
import platform
import re
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
