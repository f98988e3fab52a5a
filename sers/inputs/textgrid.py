"""Praat TextGrids: read (long and short text format) and write (long format), by praatio.

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
write -> read round trip gives back the same times exactly (but for praatio's one
rounding: a time within 1e-14 relative of a whole second is written as that second).

The parsing and the writing are praatio's (`praatio.utilities.textgrid_io`, the
functions under `openTextgrid` and `Textgrid.save`). sers calls them on text rather
than through praatio's Textgrid objects because those refuse zero-length intervals
(which aligners do write), and it checks what praatio does not: the header, the tier
classes, and that every tier holds as many entries as it declares (praatio stops
quietly at the end of a cut-short file). praatio's errors become one-line SersErrors
naming the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from praatio.utilities import constants, textgrid_io
from praatio.utilities.errors import PraatioException

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

# The header of both formats (the long one labels its values "xmin = ", "tiers? ", "size = ");
# old Praat versions wrote the short format's file type as "ooTextFile short".
_HEADER = re.compile(r'\A\s*File type\s*=\s*"ooTextFile(?: short)?"\s*Object class\s*=\s*"TextGrid"\s*'
                     r'(?:xmin\s*=\s*)?(\S+)\s*(?:xmax\s*=\s*)?(\S+)\s*(?:tiers\?\s*)?<(exists|absent)>'
                     r'\s*(?:size\s*=\s*)?(\d*)')
# A tier's head: class, name, xmin, xmax, entry count, one a line. A long-format class is
# labelled, so any class is seen; in the short format only the two real ones can be told
# from labels, and a tier of another class shows up as a missing tier.
_TIER_HEAD = re.compile(r'^[ \t]*(?:class\s*=\s*"(\w*)"|"(IntervalTier|TextTier)")[ \t]*\n'
                        r'[ \t]*(?:name\s*=\s*)?"(?:[^"\n]|"")*"[ \t]*\n[^\n]*\n[^\n]*\n'
                        r'[ \t]*(?:(?:intervals|points):\s*size\s*=\s*)?(\d+)[ \t]*$', re.M)
# praatio reads numbers as [\d.]+, but Praat writes very small ones as 6.25e-05 (and a minus
# sign praatio would drop: sers refuses a negative time rather than read it positive).
_NEGATIVE = re.compile(r'^[ \t]*(?:\w+\s*=\s*)?-(?!0*\.?0*(?:[eE][-+]?\d+)?[ \t]*$)[\d.]', re.M)
_EXPONENT = re.compile(r'^([ \t]*(?:\w+\s*=\s*)?)([-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+)([ \t]*)$', re.M)


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
    text = text.replace("\r\n", "\n")
    head = _HEADER.match(text)
    if not head:
        if re.match(r'\s*File type\s*=\s*"ooTextFile(?: short)?"\s*Object class\s*=\s*"TextGrid"', text):
            raise SersError(f"{source}: TextGrid ends early or is malformed in its header")
        raise SersError(f"{source}: not a Praat TextGrid "
                        f'(expected File type = "ooTextFile", Object class = "TextGrid")')
    if head[3] == "absent":
        return TextGrid(float(head[1]), float(head[2]), source=source)
    heads = [(long or short, int(size)) for long, short, size in _TIER_HEAD.findall(text)]
    for kind, _ in heads:
        if kind not in (constants.INTERVAL_TIER, constants.POINT_TIER):
            raise SersError(f"{source}: a tier has unknown class {kind!r}")
    if negative := _NEGATIVE.search(text):
        line = text.count("\n", 0, negative.start()) + 1
        raise SersError(f"{source}:{line}: a negative time, which sers does not read")
    text = _EXPONENT.sub(lambda m: m[1] + format(Decimal(repr(float(m[2]))), "f") + m[3], text)
    # praatio un-doubles the quotes of every label but the long format's point marks.
    long_format = "item [" in text and "ooTextFile short" not in text

    def label(entry, point: bool) -> str:
        return entry[-1].replace('""', '"') if point and long_format else entry[-1]

    try:
        parsed = textgrid_io.parseTextgridStr(text, includeEmptyIntervals=True)
        tiers = []
        for t in parsed["tiers"]:
            point = t["class"] == constants.POINT_TIER
            tiers.append(IntervalTier(t["name"], float(t["xmin"]), float(t["xmax"]),
                                      [Interval(float(e[0]), float(e[-2]), label(e, point))
                                       for e in t["entries"]], point))
        grid = TextGrid(float(parsed["xmin"]), float(parsed["xmax"]), tiers, source)
    except (PraatioException, ValueError, IndexError) as exc:
        raise SersError(f"{source}: not a readable TextGrid ({exc})") from None
    declared = int(head[4] or 0)
    if not declared == len(heads) == len(tiers):
        raise SersError(f"{source}: TextGrid ends early or has a tier of unknown class "
                        f"({declared} tiers declared, {len(tiers)} read)")
    for tier, (_, size) in zip(tiers, heads):
        if len(tier) != size:
            raise SersError(f"{source}: TextGrid ends early: tier {tier.name!r} declares "
                            f"{size} entries and holds {len(tier)}")
        _check_order(tier, source)
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

def format_textgrid(grid: TextGrid) -> str:
    """The long-format text of `grid` (gaps in interval tiers filled with "")."""
    tiers = []
    for tier in grid.tiers:
        ordered = IntervalTier(tier.name, tier.start, tier.end,
                               sorted(tier.intervals, key=lambda iv: iv.start), tier.is_point_tier)
        if not tier.is_point_tier:
            _check_order(ordered, grid.source)
        # float(): praatio writes repr(), which for a numpy number is "np.float64(0.25)".
        tiers.append({"class": constants.POINT_TIER if tier.is_point_tier else constants.INTERVAL_TIER,
                      "name": tier.name, "xmin": float(tier.start), "xmax": float(tier.end),
                      "entries": [(float(iv.start), iv.label) if tier.is_point_tier
                                  else (float(iv.start), float(iv.end), iv.label) for iv in ordered.intervals]})
    # minimumIntervalLength=None: praatio would otherwise merge intervals under 10 ns away.
    return textgrid_io.getTextgridAsStr({"xmin": float(grid.start), "xmax": float(grid.end), "tiers": tiers},
                                        "long_textgrid", includeBlankSpaces=True,
                                        minimumIntervalLength=None)


def write_textgrid(grid: TextGrid, path: str | Path) -> Path:
    """Write `grid` in Praat's long text format, UTF-8."""
    path = Path(path)
    path.write_text(format_textgrid(grid), encoding="utf-8")
    return path
