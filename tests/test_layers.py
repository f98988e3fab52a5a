"""The layer rules of DESIGN.md and docs/architecture.md, checked on every import in sers/.

A part may import only the parts listed for it in ALLOWED (its own modules always). The rules
are what keeps the cache readable without models, the estimator usable on any arrays, and the
CLI replaceable: break one and this test names the file, the line and the import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sers"

# Shared by every layer: the error type, atomic writes, JSON reading, helper processes, lazy imports,
# the split and language rules every way into a cache applies (corpus readers and cache import).
FOUNDATION = {"errors", "atomic", "jsonfile", "workers", "lazy", "fields", "__version__"}
ALLOWED = {
    "foundation": set(),
    "cache": set(),                      # the format knows no stage, model or input
    "inputs": set(),                     # audio, manifests, corpora, alignments: read, never computed on
    "analysis": set(),                   # measures on plain arrays
    "display": set(),                    # tables and figures of what others computed
    "classifiers": {"analysis"},         # arrays in, predictions out: never opens a cache
    "ct2": set(),                        # model wrappers compute and never write
    "upstream": {"ct2"},
    "synth": {"inputs"},                 # generated corpora are written as inputs are read
    "runs": set(),                       # the run-folder schema
    "report": {"cache", "display", "inputs", "runs", "analysis", "classifiers"},
    "pipeline": {"cache", "classifiers", "inputs", "analysis", "display", "upstream", "ct2", "synth", "runs",
                 "report"},
    "cli": {"pipeline", "cache", "classifiers", "inputs", "analysis", "display", "upstream", "ct2", "synth",
            "runs", "report"},
}


def module_name(path: Path) -> str:
    """sers/cache/reader.py -> 'sers.cache.reader'; a package's __init__.py -> the package."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def part_of(module: str) -> str:
    """'sers.cache.reader' -> 'cache'; foundation modules -> 'foundation'."""
    name = module.split(".")[1] if "." in module else module
    return "foundation" if name in FOUNDATION or module == "sers" else name


def sers_imports(path: Path):
    """(line, imported module) for every import of a sers module in a file, relative ones resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = ([".".join(base + [node.module])] if node.module  # from .reader import Reader
                         else [".".join(base + [alias.name]) for alias in node.names])  # from . import schema
            elif node.module == "sers":  # from sers import cache, errors
                names = [f"sers.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            if name == "sers" or name.startswith("sers."):
                yield node.lineno, name


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_rule():
    parts = {part_of(module_name(p)) for p in SOURCES}
    parts.discard("__main__")
    assert parts <= set(ALLOWED), f"parts without a rule in ALLOWED: {sorted(parts - set(ALLOWED))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_follow_the_layers(path):
    here = part_of(module_name(path))
    if here == "__main__":
        return
    broken = []
    for line, imported in sers_imports(path):
        there = part_of(imported)
        if there in (here, "foundation"):
            continue
        if there not in ALLOWED.get(here, set()):
            broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported} "
                          f"({here} may import {', '.join(sorted(ALLOWED[here])) or 'only the foundation'})")
    assert not broken, "\n".join(broken)


def test_the_rule_catches_a_break(tmp_path):
    """The checker itself: a cache module importing a pipeline module is reported."""
    package = tmp_path / "sers" / "cache"
    package.mkdir(parents=True)
    bad = package / "bad.py"
    bad.write_text("from sers.pipeline import train\nfrom . import schema\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "sers"
    try:
        imports = list(sers_imports(bad))
        assert imports == [(1, "sers.pipeline"), (2, "sers.cache.schema")]
        with pytest.raises(AssertionError, match=r"cache/bad.py:1 imports sers.pipeline"):
            test_imports_follow_the_layers(bad)
    finally:
        PACKAGE = saved


def test_nothing_imports_the_cli():
    importers = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in SOURCES
                 if part_of(module_name(path)) != "cli"
                 for line, imported in sers_imports(path) if part_of(imported) == "cli"]
    assert not importers, f"modules outside sers/cli import it: {importers}"
