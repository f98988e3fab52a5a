"""The code blocks of the docs, as the tests that run or check them read them.

A block is a fenced ``` block of a page (README.md, configs/README.md, docs/*.md,
docs/commands/*.md; not docs/benchmarks/, which holds generated results). A block that cannot
run in the tests (it needs a GPU, a real corpus, a cluster) says why on the line just before
its fence, visible in the page's source:

    <!-- not run: needs MSP-Podcast and a GPU -->

Blocks are named "page: first line" (stable while other blocks come and go), so that a test
can list the blocks it leaves out and fail on any new block nobody runs.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
FENCE = re.compile(r"^( *)(`{3,})\s*([\w+-]*)")  # list items indent their blocks
SHELL = ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class Block:
    page: str           # relative to the repository root
    line: int           # 1-based line of the opening fence
    lang: str           # the fence's info string ("" when none)
    code: str
    not_run: str | None  # the reason given by a <!-- not run: ... --> line, if any

    @property
    def name(self) -> str:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return f"{self.page}: {first}"

    @property
    def is_python(self) -> bool:
        return self.lang == "python"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "configs" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "docs" / "commands").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, fences paired as Markdown pairs them (a closing fence has
    no info string and at least as many backticks as the opening one)."""
    out, lines = [], page.read_text().splitlines()
    relative = str(page.relative_to(ROOT))
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        _, ticks, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].strip().startswith(ticks) and not lines[j].strip().strip("`")), len(lines))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = NOT_RUN.match(before)
        out.append(Block(relative, i + 1, lang, textwrap.dedent("\n".join(lines[i + 1:end]) + "\n"),
                         mark.group(1) if mark else None))
        i = end + 1
    return out


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def sers_commands(text: str):
    """Each `sers ...` invocation of a shell text, continuation lines joined, comments and a
    leading "$ " prompt removed."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip().removeprefix("$ ")
        if line.startswith("sers "):
            yield line


def is_example(block: Block) -> bool:
    """What must run in a test or say why not: Python code, and shell code that calls sers."""
    return block.is_python or (block.is_shell and any(sers_commands(block.code)))
