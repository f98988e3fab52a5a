"""Forced alignments: phone intervals per utterance, and the model frames they cover.

Two sources are read:

* a folder of Praat TextGrids (Montreal Forced Aligner output; sub-folders per speaker
  are searched too), one ``<name>.TextGrid`` per utterance or per audio file, with a phone
  tier (default ``phones``; MFA's multi-speaker ``"<speaker> - phones"`` is found too);
* one Kaldi CTM file, a line per phone: ``<name> <channel> <start> <duration> <phone> [<conf>]``.

Which alignment belongs to an utterance, and what its times are relative to:

* ``<utterance id>`` (when the id differs from the audio file's name): the times are
  seconds into the utterance's audio (the manifest's ``start`` is its zero);
* ``<audio file stem>``: the times are seconds into the file (MFA run on whole files);
  the utterance's ``start`` is subtracted, and phones outside the utterance's
  [start, end) are dropped (clipped where they straddle its edge).

A phone running past the audio by more than ``TOLERANCE`` seconds (or before 0) is an
error naming the utterance and the times: usually the alignment of another file.

Frames. Model frame f stands for [f / rate, (f + 1) / rate); a segment [t0, t1) takes the
frames whose *centre* (f + 0.5) / rate lies inside it (see :func:`frame_span`). Adjacent
segments thus share no frame, and a frame on a boundary goes to the later segment.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from sers.errors import SersError
from sers.inputs.textgrid import Interval, read_textgrid

__all__ = ["Alignments", "open_alignments", "read_ctm", "utterance_phones", "frame_span", "TOLERANCE",
           "FORMATS", "OutsideAudioError"]

FORMATS = ("textgrid", "ctm")
# Seconds a phone may run past the audio: aligners round times (CTM to 10 ms) and audio
# lengths change by a sample when resampled. One frame at 50 /s.
TOLERANCE = 0.02


class OutsideAudioError(SersError):
    """A phone lies outside the utterance's audio (callers may collect these before raising)."""


class Alignments:
    """Phone intervals by name (utterance id or audio file stem), read on demand."""

    def __init__(self, source: Path, format: str, phone_tier: str = "phones"):
        self.source = Path(source)
        self.format = format
        self.phone_tier = phone_tier
        self._files: dict[str, list[Path]] = {}
        self._ctm: dict[str, list[Interval]] = {}
        if format == "ctm":
            self._ctm = read_ctm(self.source)
        elif self.source.is_dir():
            for path in sorted(self.source.rglob("*")):
                if path.suffix.lower() == ".textgrid" and path.is_file():
                    self._files.setdefault(path.stem, []).append(path)
        else:
            self._files[self.source.stem] = [self.source]

    def names(self) -> list[str]:
        return sorted(self._ctm if self.format == "ctm" else self._files)

    def __contains__(self, name: str) -> bool:
        return name in (self._ctm if self.format == "ctm" else self._files)

    def phones(self, name: str) -> list[Interval] | None:
        """The phone intervals aligned under ``name`` (silence included), or None if there are none."""
        if self.format == "ctm":
            return self._ctm.get(name)
        paths = self._files.get(name)
        if not paths:
            return None
        if len(paths) > 1:
            raise SersError(f"{self.source}: {len(paths)} TextGrids are named {name}: "
                            f"{', '.join(str(p) for p in paths[:3])}; keep one")
        return list(read_textgrid(paths[0]).tier(self.phone_tier).intervals)

    def describe(self) -> str:
        what = f"tier {self.phone_tier!r}" if self.format == "textgrid" else "CTM"
        return f"{self.source} ({what}, {len(self.names())} alignments)"


def open_alignments(path, format: str | None = None, phone_tier: str = "phones") -> Alignments:
    """A TextGrid folder (or one .TextGrid) or a CTM file; ``format`` is guessed when None."""
    path = Path(path)
    if not path.exists():
        raise SersError(f"--alignments {path}: no such file or folder")
    if format is None:
        format = "ctm" if path.is_file() and path.suffix.lower() == ".ctm" else "textgrid"
    if format not in FORMATS:
        raise SersError(f"--alignment-format {format}: choose one of {', '.join(FORMATS)}")
    if format == "ctm" and path.is_dir():
        raise SersError(f"--alignments {path} is a folder; a CTM alignment is one file")
    alignments = Alignments(path, format, phone_tier)
    if not alignments.names():
        raise SersError(f"--alignments {path}: no {'phones in the CTM file' if format == 'ctm' else '*.TextGrid files'}")
    return alignments


def read_ctm(path) -> dict[str, list[Interval]]:
    """Kaldi CTM: ``name channel start duration phone [confidence]`` per line; ';;' comments."""
    path = Path(path)
    phones: dict[str, list[Interval]] = defaultdict(list)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SersError(f"{path}: cannot read the CTM file ({exc})") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) not in (5, 6):
            raise SersError(f"{path}:{number}: expected 'name channel start duration phone [confidence]', "
                            f"found {len(fields)} fields: {line.strip()!r}")
        try:
            start, duration = float(fields[2]), float(fields[3])
        except ValueError:
            raise SersError(f"{path}:{number}: start and duration must be numbers: {line.strip()!r}") from None
        if duration < 0 or not math.isfinite(start + duration):
            raise SersError(f"{path}:{number}: a negative or non-finite time: {line.strip()!r}")
        phones[fields[0]].append(Interval(start, start + duration, fields[4]))
    return {name: sorted(intervals, key=lambda iv: iv.start) for name, intervals in phones.items()}


def utterance_phones(alignments: Alignments, utterance_id: str, audio_path, start, end,
                     duration: float) -> list[Interval] | None:
    """Phone intervals of one utterance in seconds into its audio [0, duration], or None.

    ``start``/``end``: the manifest's segment of the file (None or NaN: whole file).
    Raises OutsideAudioError if a phone lies outside the audio (see the module doc).
    """
    start = None if start is None or math.isnan(start) else float(start)
    end = None if end is None or math.isnan(end) else float(end)
    stem = Path(str(audio_path)).stem
    if utterance_id != stem and utterance_id in alignments:
        intervals, file_relative = alignments.phones(utterance_id), False
    elif stem in alignments:
        intervals, file_relative = alignments.phones(stem), True
    else:
        return None
    offset = start if file_relative and start is not None else 0.0
    # Part of a longer file aligned as a whole: the other utterances' phones are not errors.
    window = file_relative and (start is not None or end is not None)
    phones = []
    for iv in intervals:
        t0, t1 = iv.start - offset, iv.end - offset
        if window and (t1 <= 0 or t0 >= duration):
            continue
        if not window and (t0 < -TOLERANCE or t1 > duration + TOLERANCE):
            raise OutsideAudioError(f"utterance {utterance_id}: phone {iv.label!r} at {iv.start:.3f}-{iv.end:.3f} s "
                            f"lies outside its audio (0-{duration:.3f} s) in {alignments.source}; "
                            "is it the alignment of another file?")
        t0, t1 = max(t0, 0.0), min(t1, duration)
        if t1 > t0:
            phones.append(Interval(t0, t1, iv.label))
    return phones


def frame_span(start: float, end: float, frame_rate: float, n_frames: int) -> tuple[int, int]:
    """Frames [first, stop) of a segment [start, end) s: those whose centre lies inside it.

    A segment too short to hold a frame centre gets the one frame holding its midpoint;
    spans are clipped to the ``n_frames`` the model produced (at least one frame).
    """
    # 1e-6 frame absorbs float error in times that are exact multiples of a frame.
    first = math.ceil(start * frame_rate - 0.5 - 1e-6)
    stop = math.ceil(end * frame_rate - 0.5 - 1e-6)
    if stop <= first:
        first = math.floor((start + end) / 2 * frame_rate)
        stop = first + 1
    first = min(max(first, 0), n_frames - 1)
    stop = min(max(stop, first + 1), n_frames)
    return first, stop
