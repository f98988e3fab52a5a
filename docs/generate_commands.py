"""Write docs/commands/<command>.md from the CLI's own --help, so the pages cannot drift.

    python docs/generate_commands.py           # rewrite the pages
    python docs/generate_commands.py --check   # exit 1 if a page differs (tests run this)
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from sers.cli import main as sers_main

PAGES = Path(__file__).resolve().parent / "commands"


def _commands(group: click.Group, prefix: str):
    ctx = click.Context(group, info_name=prefix)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        full = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, full)
        else:
            yield full, command


def _help(full_name: str, command: click.Command) -> str:
    parent = click.Context(sers_main, info_name="sers")
    ctx = click.Context(command, info_name=full_name.split(" ", 1)[1], parent=parent,
                        terminal_width=100, max_content_width=100)
    return command.get_help(ctx)


def pages() -> dict[Path, str]:
    out, index = {}, ["# Commands", "", "Generated from `sers <command> --help` by docs/generate_commands.py.", ""]
    for full_name, command in _commands(sers_main, "sers"):
        slug = full_name.removeprefix("sers ").replace(" ", "-")
        summary = command.get_short_help_str(limit=100)
        index.append(f"- [`{full_name}`]({slug}.md): {summary}")
        out[PAGES / f"{slug}.md"] = f"# `{full_name}`\n\n```\n{_help(full_name, command)}\n```\n"
    out[PAGES / "README.md"] = "\n".join(index) + "\n"
    return out


def main(argv) -> int:
    stale = []
    for path, text in pages().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"docs/commands is out of date ({', '.join(stale)}): run python docs/generate_commands.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
