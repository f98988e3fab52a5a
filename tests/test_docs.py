"""The docs cannot drift: command pages are generated from --help; every `sers` command in the docs
(tests/doc_blocks.py reads their code blocks) and in configs uses real commands and options."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click

from sers.cli import main

import doc_blocks

ROOT = Path(__file__).resolve().parent.parent


def test_command_pages_match_the_cli():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_commands.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_has_an_example():
    def walk(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                yield from walk(command, f"{prefix} {name}")
            else:
                yield f"{prefix} {name}", command

    for name, command in walk(main, "sers"):
        assert "Example:" in (command.help or ""), f"{name} --help has no example"


def _check_options(command_line: str):
    words = [w for w in shlex.split(command_line.replace('"${COMMON[@]}"', ""))]
    command, rest = main, words[1:]
    while isinstance(command, click.Group):
        command, rest = command.get_command(click.Context(command), rest[0]), rest[1:]
        assert command is not None, command_line
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"{word} is not an option of: {command_line}"


def _help_examples(text: str) -> str:
    """The lines under "Example:" in a generated command page (the rest is --help prose, where a
    line may start with "sers train chooses ..." without being a command)."""
    return "\n".join(re.findall(r"^ *Example:\n(.*?)(?:\n\n|\Z)", text, flags=re.S | re.M))


def test_documented_commands_use_real_options():
    """Every `sers` line of every page's shell (and unlabelled) blocks, the command pages' examples
    and the paper protocol names a real command and only its options."""
    checked = {}
    for page in doc_blocks.pages():
        for block in doc_blocks.blocks(page):
            if block.is_shell or block.lang == "":
                text = _help_examples(block.code) if block.page.startswith("docs/commands/") else block.code
                for command_line in doc_blocks.sers_commands(text):
                    _check_options(command_line)
                    checked[block.page] = checked.get(block.page, 0) + 1
    for command_line in doc_blocks.sers_commands((ROOT / "configs" / "paper-protocol.sh").read_text()):
        _check_options(command_line)
        checked["configs/paper-protocol.sh"] = checked.get("configs/paper-protocol.sh", 0) + 1
    command_pages = sorted(p.name for p in (ROOT / "docs" / "commands").glob("*.md") if p.name != "README.md")
    unchecked = [name for name in command_pages if f"docs/commands/{name}" not in checked]
    assert not unchecked, f"command pages whose examples were not found: {unchecked}"
    for page in ("README.md", "docs/quickstart.md", "docs/scaling.md", "docs/vowels.md", "configs/paper-protocol.sh"):
        assert checked.get(page), f"no sers command found in {page}"


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head) and any(line.startswith("make test") for line in head)
