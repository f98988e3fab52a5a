"""What `sers cache merge`, `import`, `export` and `upgrade` did: one object each, whose ``summary()``
is the line the CLI prints. Each also stands for the path it wrote (``os.fspath(result)``),
so code that passed the returned path on keeps working."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class _Written:
    path: os.PathLike | str  # as the caller gave it: the summary names it the same way

    def __fspath__(self) -> str:
        return os.fspath(self.path)


@dataclass(frozen=True)
class MergeResult(_Written):
    n_shards: int
    n_utterances: int
    n_errors: int

    def summary(self) -> str:
        return (f"merged {self.n_shards} shards: {self.n_utterances} utterances, "
                f"{self.n_errors} errors -> {self.path}")


@dataclass(frozen=True)
class ImportResult(_Written):
    n_utterances: int
    num_layers: int
    hidden_size: int

    def summary(self) -> str:
        return (f"imported {self.n_utterances} utterances, {self.num_layers} layers x "
                f"{self.hidden_size} -> {self.path}")


@dataclass(frozen=True)
class ExportResult(_Written):
    n_utterances: int

    def summary(self) -> str:
        return f"exported {self.n_utterances} utterances -> {self.path}"


@dataclass(frozen=True)
class UpgradeResult(_Written):
    added: str | None  # what was written, in words; None when the cache already had everything

    def summary(self) -> str:
        return f"{self.path}: {self.added}" if self.added else f"{self.path}: up to date, nothing to do"
