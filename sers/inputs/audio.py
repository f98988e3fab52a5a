"""Reading audio for the model: any libsndfile format, mono, at the model's sample rate.

Three promises the extraction stage relies on:

- ``audio_info`` reads only the file header, so planning a run over a corpus of hundreds
  of hours costs seconds, not a decoding pass;
- ``load_audio`` decodes only the requested [start, end) segment (it seeks), averages the
  channels to mono and resamples with libsoxr's band-limited 'HQ' filter, so energy above
  the new Nyquist frequency is removed instead of folding back as aliases;
- ``num_samples_after_resampling(audio_info(...)[0], rate, target)`` is exactly the
  length ``load_audio`` returns, so the cache layout can be fixed before any decoding.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
import soxr

from sers.errors import SersError
from sers.inputs.embedded import audio_bytes, is_reference

# Manifests often round segment times (to ms, or to the file length); a segment that ends
# this little past the end of the file is cut at the end instead of rejected.
END_TOLERANCE_SECONDS = 0.01
RESAMPLER_QUALITY = "HQ"


def audio_info(path, start: float | None = None, end: float | None = None) -> tuple[int, int, float]:
    """(samples at the native rate, native sample rate, seconds) of the file or its segment.

    Reads the header only. Raises SersError naming the file if it is missing, unreadable,
    empty, or if the segment lies outside it.
    """
    info = _open(path, soundfile.info)
    if info.format in ("WAV", "WAVEX"):
        _check_wav_length(path, info.frames, info.samplerate)
    first, last = _segment_samples(path, info.frames, info.samplerate, start, end)
    return last - first, info.samplerate, (last - first) / info.samplerate


# A WAV header written before its audio (a streaming writer) holds one of these as its data size.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def _check_wav_length(path, frames: int, rate: int) -> None:
    """A WAV whose data chunk is shorter than its header announces (an interrupted copy or download)
    is refused naming both durations: libsndfile reads what is there without a word, so the
    utterance's label would be trained on the part of the recording that happens to be left."""
    try:
        with io.BytesIO(audio_bytes(path)) if is_reference(path) else open(path, "rb") as handle:
            if handle.read(12)[8:12] != b"WAVE":
                return
            block_align = None
            while True:
                header = handle.read(8)
                if len(header) < 8:
                    return
                kind, size = header[:4], int.from_bytes(header[4:], "little")
                if kind == b"fmt ":
                    fmt = handle.read(size + (size & 1))
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                    continue
                if kind == b"data":
                    break
                handle.seek(size + (size & 1), 1)  # chunks are padded to an even length
    except OSError:
        return
    if not block_align or size in _UNKNOWN_SIZES:
        return
    announced = size // block_align
    if announced > frames:
        raise SersError(f"{path}: truncated: its header announces {announced / rate:.3f} s of audio but the file "
                        f"holds {frames / rate:.3f} s (an interrupted copy or download?); copy it again, or rewrite "
                        f"its header to keep the {frames / rate:.3f} s that are there (e.g. sox {Path(path).name} "
                        f"fixed.wav)")


def load_audio(path, sample_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Decode [start, end) seconds of ``path`` as float32 mono at ``sample_rate``.

    Channels are averaged. Raises SersError naming the file and the reason for missing,
    corrupt or empty audio and for segments outside the file.
    """
    with _open(path, soundfile.SoundFile) as sound:
        native_rate = sound.samplerate
        first, last = _segment_samples(path, sound.frames, native_rate, start, end)
        try:
            if first:
                sound.seek(first)
            samples = sound.read(last - first, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError) as exc:
            raise SersError(f"{path}: cannot decode audio ({_reason(exc)})") from None
    if len(samples) == 0:
        raise SersError(f"{path}: no audio could be decoded")
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return resample(np.ascontiguousarray(mono), native_rate, sample_rate)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a mono float32 signal, to exactly the promised length."""
    if rate_in == rate_out:
        return wave
    resampled = soxr.resample(wave, rate_in, rate_out, quality=RESAMPLER_QUALITY)
    # libsoxr rounds the output length with floating-point arithmetic; pin it to the exact
    # rational rounding (they differ by at most one sample, on exact .5 ties).
    expected = num_samples_after_resampling(len(wave), rate_in, rate_out)
    if len(resampled) >= expected:
        return resampled[:expected]
    return np.pad(resampled, (0, expected - len(resampled)))


def num_samples_after_resampling(num_samples: int, rate_in, rate_out) -> int:
    """Length of ``num_samples`` at ``rate_in`` once resampled to ``rate_out`` by ``load_audio``.

    round(num_samples * rate_out / rate_in), halves rounded up, computed exactly.
    """
    if rate_in == rate_out:
        return int(num_samples)
    exact = Fraction(int(num_samples)) * Fraction(rate_out) / Fraction(rate_in)
    return math.floor(exact + Fraction(1, 2))


def _open(path, opener):
    """Call soundfile's ``opener`` on ``path``, turning its failures into one-line SersErrors."""
    if is_reference(path):  # a dataset row's embedded bytes (sers.inputs.embedded), read here: in the worker
        return _decoder(path, opener, io.BytesIO(audio_bytes(path)))
    if not Path(path).exists():
        raise SersError(f"{path}: audio file not found")
    if Path(path).is_dir():
        raise SersError(f"{path}: is a folder, not an audio file")
    if not Path(path).is_file():  # a FIFO or device would block the decoder forever
        raise SersError(f"{path}: not a regular file (a pipe, socket or device), not an audio file")
    return _decoder(path, opener, str(path))


def _decoder(path, opener, source):
    try:
        return opener(source)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        raise SersError(f"{path}: cannot read audio ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    # LibsndfileError carries libsndfile's own short message ("Format not recognised.").
    reason = getattr(exc, "error_string", None) or str(exc)
    return reason.strip().rstrip(".")


def _segment_samples(path, total: int, rate: int, start, end) -> tuple[int, int]:
    """[first, last) sample indices at the native rate for a segment given in seconds."""
    duration = total / rate if rate else 0.0
    if total <= 0:
        raise SersError(f"{path}: contains no audio (0 samples)")
    first = 0 if start is None else round(start * rate)
    last = total if end is None else round(end * rate)
    if first < 0:
        raise SersError(f"{path}: segment start {start:g} s is negative")
    if first >= total:
        raise SersError(f"{path}: segment starts at {start:g} s, after the end of the file ({duration:.3f} s)")
    if last > total:
        if last - total > END_TOLERANCE_SECONDS * rate:
            raise SersError(f"{path}: segment ends at {end:g} s, past the end of the file ({duration:.3f} s)")
        last = total
    if last <= first:
        raise SersError(f"{path}: segment [{start or 0.0:g}, {end:g}) s holds no samples at {rate} Hz")
    return first, last


def load_batch(paths, starts, ends, n_samples, sample_rate):
    """Decode, resample and fit each waveform to its planned length (``n_samples``).

    Runs in `sers extract`'s decoding worker processes; returns, per file, the waveform or
    the reason it failed (a string), so one bad file never stops a batch.
    """
    out = []
    for path, start, end, expected in zip(paths, starts, ends, n_samples):
        try:
            wave = load_audio(path, sample_rate, None if np.isnan(start) else start,
                              None if np.isnan(end) else end)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is recorded, not fatal
            out.append(str(exc) if isinstance(exc, SersError) else f"{path}: cannot decode ({exc})")
            continue
        if abs(len(wave) - expected) > max(16, 0.01 * expected):
            out.append(f"{path}: decoded {len(wave)} samples but the header announced {expected}")
            continue
        # Compressed formats may decode a few samples off their header: fit to the planned layout.
        out.append(np.pad(wave[:expected], (0, max(0, expected - len(wave)))))
    return out
