"""The docs cannot drift: command pages are generated from --help, configs use real options."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click

from sers.cli import main

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


def _sers_commands(text: str):
    """Each `sers ...` invocation in a shell script or code block, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip().removeprefix("$ ")
        if line.startswith("sers "):
            yield line


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


def test_documented_commands_use_real_options():
    sources = [ROOT / "README.md", ROOT / "configs" / "paper-protocol.sh", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for path in sources:
        text = path.read_text()
        if path.suffix == ".md":  # only the code blocks
            text = "\n".join(re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S))
        for command_line in _sers_commands(text):
            _check_options(command_line)
            checked += 1
    assert checked >= 15  # README, quickstart, scaling and the paper protocol


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head) and any(line.startswith("make test") for line in head)
