"""Praat TextGrids: read (long and short text format) and write (long format).

Forced aligners such as the Montreal Forced Aligner (MFA) write one TextGrid per
utterance with interval tiers "words" and "phones" (or "<speaker> - words" /
"<speaker> - phones" when several speakers share a file); silence is an interval
with an empty label. `read_textgrid` accepts every shape Praat itself writes:
the long ("text") format, the short format, UTF-8 or UTF-16 with a byte-order
mark. Point tiers (TextTier) are read as intervals of zero length.

    tg = read_textgrid("utt001.TextGrid")
    for seg in tg.tier("phones").labelled():
        print(seg.start, seg.end, seg.label)

`write_textgrid` writes the long format, which Praat, MFA tools and textgrid
libraries all read; numbers are written with every digit a float needs, so a
write -> read round trip gives back the same times exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sers.errors import SersError

__all__ = ["Interval", "IntervalTier", "TextGrid", "read_textgrid", "parse_textgrid",
           "write_textgrid", "format_textgrid"]


@dataclass(frozen=True)
class Interval:
    """One labelled stretch of time, in seconds ("" = silence / unlabelled)."""

    start: float
    end: float
    label: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class IntervalTier:
    """A named tier; `intervals` are in time order and do not overlap."""

    name: str
    start: float
    end: float
    intervals: list[Interval] = field(default_factory=list)
    is_point_tier: bool = False

    def labelled(self) -> list[Interval]:
        """The intervals with a non-empty label (silence dropped)."""
        return [iv for iv in self.intervals if iv.label.strip()]

    def __len__(self) -> int:
        return len(self.intervals)


@dataclass
class TextGrid:
    start: float
    end: float
    tiers: list[IntervalTier] = field(default_factory=list)
    source: str = "<TextGrid>"

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def tier(self, name: str) -> IntervalTier:
        """The tier called `name`, or MFA's multi-speaker "<speaker> - name" if unique.

        Raises SersError naming the tiers that exist when there is no such tier.
        """
        exact = [t for t in self.tiers if t.name == name]
        if exact:
            return exact[0]
        suffixed = [t for t in self.tiers if t.name.endswith(f" - {name}")]
        if len(suffixed) == 1:
            return suffixed[0]
        found = ", ".join(repr(n) for n in self.tier_names) or "none"
        if len(suffixed) > 1:
            raise SersError(f"{self.source}: tier {name!r} is ambiguous; tiers are {found}")
        raise SersError(f"{self.source}: no tier {name!r}; tiers are {found}")


# --- reading -------------------------------------------------------------------

# A Praat text file is a stream of values (numbers, "strings" with "" as an escaped
# quote, <flags>); the long format interleaves them with labels such as `xmin =`,
# `item [1]:` or `intervals: size =`, and `!` starts a comment. Reading only the
# values makes one reader serve both formats, as in Praat.
_TOKEN = re.compile(
    r'"(?P<string>(?:[^"]|"")*)"'
    r"|(?P<flag><[A-Za-z]+>)"
    r"|(?P<comment>![^\n]*)"
    r"|(?P<index>\[\s*\d*\s*\])"
    r"|(?P<name>[A-Za-z_][\w?]*)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<other>\S)"
)


class _Flag(str):
    """`<exists>` / `<absent>`: told apart from a quoted label such as "<unk>"."""


def _tokens(text: str) -> list[str | float]:
    values: list[str | float] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "string":
            values.append(m.group("string").replace('""', '"'))
        elif kind == "number":
            values.append(float(m.group("number")))
        elif kind == "flag":
            values.append(_Flag(m.group("flag")))
    return values


class _Reader:
    def __init__(self, values: list[str | float], source: str):
        self.values, self.pos, self.source = values, 0, source

    def _next(self, what: str):
        if self.pos >= len(self.values):
            raise SersError(f"{self.source}: TextGrid ends early (expected {what})")
        value = self.values[self.pos]
        self.pos += 1
        return value

    def number(self, what: str) -> float:
        value = self._next(what)
        if not isinstance(value, float):
            raise SersError(f"{self.source}: expected a number for {what}, found {value!r}")
        return value

    def string(self, what: str) -> str:
        value = self._next(what)
        if not isinstance(value, str) or isinstance(value, _Flag):
            raise SersError(f"{self.source}: expected a string for {what}, found {value!r}")
        return value

    def count(self, what: str) -> int:
        value = self.number(what)
        if value < 0 or value != int(value):
            raise SersError(f"{self.source}: {what} must be a whole number, found {value}")
        return int(value)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Praat writes non-ASCII text as UTF-16; older files may be Latin-1.
        return data.decode("latin-1")


def parse_textgrid(text: str, source: str = "<TextGrid>") -> TextGrid:
    """Parse the text of a TextGrid (long or short format)."""
    values = _tokens(text)
    # Old Praat versions wrote the short format's file type as "ooTextFile short".
    if values[:1] not in (["ooTextFile"], ["ooTextFile short"]) or values[1:2] != ["TextGrid"]:
        raise SersError(f"{source}: not a Praat TextGrid "
                        f'(expected File type = "ooTextFile", Object class = "TextGrid")')
    r = _Reader(values, source)
    r.pos = 2
    grid = TextGrid(r.number("xmin"), r.number("xmax"), source=source)
    if r._next("tiers? <exists>") != "<exists>":
        return grid
    for t in range(r.count("number of tiers")):
        kind = r.string(f"class of tier {t + 1}")
        name = r.string(f"name of tier {t + 1}")
        where = f"tier {name!r}"
        tier = IntervalTier(name, r.number(f"{where} xmin"), r.number(f"{where} xmax"))
        n = r.count(f"{where} size")
        if kind == "IntervalTier":
            for i in range(n):
                start = r.number(f"{where} interval {i + 1} xmin")
                end = r.number(f"{where} interval {i + 1} xmax")
                tier.intervals.append(Interval(start, end, r.string(f"{where} interval {i + 1} text")))
        elif kind == "TextTier":
            tier.is_point_tier = True
            for i in range(n):
                time = r.number(f"{where} point {i + 1} time")
                tier.intervals.append(Interval(time, time, r.string(f"{where} point {i + 1} mark")))
        else:
            raise SersError(f"{source}: {where} has unknown class {kind!r}")
        _check_order(tier, source)
        grid.tiers.append(tier)
    return grid


def read_textgrid(path: str | Path) -> TextGrid:
    """Read a TextGrid file; SersError naming the file if it is missing or malformed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SersError(f"{path}: cannot read TextGrid ({exc.strerror or exc})") from None
    return parse_textgrid(_decode(data), source=str(path))


def _check_order(tier: IntervalTier, source: str) -> None:
    previous_end = tier.start
    for iv in tier.intervals:
        # 1e-9 s tolerates the rounding of aligners that print 3-6 decimals.
        if iv.end < iv.start or iv.start < previous_end - 1e-9:
            raise SersError(f"{source}: tier {tier.name!r}: interval {iv.label!r} "
                            f"[{iv.start}, {iv.end}] overlaps or runs backwards")
        previous_end = iv.end
    if tier.intervals and previous_end > tier.end + 1e-9:
        raise SersError(f"{source}: tier {tier.name!r} runs past its end {tier.end}")


# --- writing -------------------------------------------------------------------

def _num(x: float) -> str:
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def _tiled(tier: IntervalTier) -> list[Interval]:
    """The tier's intervals with empty intervals filling any gaps, as Praat requires."""
    out: list[Interval] = []
    cursor = tier.start
    for iv in sorted(tier.intervals, key=lambda iv: iv.start):
        if iv.start < cursor - 1e-12 or iv.end < iv.start:
            raise ValueError(f"tier {tier.name!r}: interval {iv} overlaps the one before it")
        if iv.start > cursor:
            out.append(Interval(cursor, iv.start, ""))
        out.append(iv)
        cursor = iv.end
    if cursor > tier.end + 1e-12:
        raise ValueError(f"tier {tier.name!r}: intervals run past the tier end {tier.end}")
    if cursor < tier.end or not out:
        out.append(Interval(cursor, tier.end, ""))
    return out


def format_textgrid(grid: TextGrid) -> str:
    """The long-format text of `grid` (gaps in interval tiers filled with "")."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             f"xmin = {_num(grid.start)} ", f"xmax = {_num(grid.end)} "]
    if not grid.tiers:
        lines.append("tiers? <absent> ")
        return "\n".join(lines) + "\n"
    lines += ["tiers? <exists> ", f"size = {len(grid.tiers)} ", "item []: "]
    for t, tier in enumerate(grid.tiers, start=1):
        point = tier.is_point_tier
        items = sorted(tier.intervals, key=lambda iv: iv.start) if point else _tiled(tier)
        lines += [f"    item [{t}]:",
                  f'        class = "{"TextTier" if point else "IntervalTier"}" ',
                  f"        name = {_quote(tier.name)} ",
                  f"        xmin = {_num(tier.start)} ", f"        xmax = {_num(tier.end)} ",
                  f"        {'points' if point else 'intervals'}: size = {len(items)} "]
        for i, iv in enumerate(items, start=1):
            if point:
                lines += [f"        points [{i}]:", f"            number = {_num(iv.start)} ",
                          f"            mark = {_quote(iv.label)} "]
            else:
                lines += [f"        intervals [{i}]:", f"            xmin = {_num(iv.start)} ",
                          f"            xmax = {_num(iv.end)} ",
                          f"            text = {_quote(iv.label)} "]
    return "\n".join(lines) + "\n"


def write_textgrid(grid: TextGrid, path: str | Path) -> Path:
    """Write `grid` in Praat's long text format, UTF-8."""
    path = Path(path)
    path.write_text(format_textgrid(grid), encoding="utf-8")
    return path
