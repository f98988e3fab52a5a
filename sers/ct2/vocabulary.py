"""A CTranslate2 Whisper vocabulary: tokens by id, and decoding ids to text without a tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path


def read_vocabulary(folder) -> list[str] | None:
    """Tokens by id from ``vocabulary.json`` (a list) or ``vocabulary.txt`` (one per line)."""
    folder = Path(folder)
    if (folder / "vocabulary.json").is_file():
        return json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    if (folder / "vocabulary.txt").is_file():
        lines = (folder / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    return None


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: byte-level BPE spells every byte as a printable char."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = printable + [256 + n for n in range(len(others))]
    return {chr(c): b for c, b in zip(chars, printable + others)}


_BYTE_DECODER = _byte_decoder()
_SPECIAL = re.compile(r"^<\|.*\|>$")


def decode_tokens(vocabulary: list[str], ids) -> str:
    """Text of token ids, skipping special tokens like ``<|endoftext|>`` (no tokenizer needed)."""
    text = "".join(vocabulary[i] for i in ids if not _SPECIAL.match(vocabulary[i]))
    return bytes(_BYTE_DECODER.get(ch, ord("?")) for ch in text).decode("utf-8", errors="replace")
