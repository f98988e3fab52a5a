"""The source-filter voice: glottal pulses and noise through formant resonators.

    glottal flow (Rosenberg pulses, jitter, shimmer)  --d/dt, tilt-->  voiced source
    + aspiration noise (breathiness, /h/, stop aspiration)
      --> cascade of 2nd-order resonators F1..F5 (time-varying, block-wise)
    + frication noise (bursts, fricatives) through fixed band-pass filters
    --> level, background noise

The resonators are Klatt's digital formant resonators (Klatt 1980) with unity
gain at 0 Hz, so the cascade's peaks follow the formants as a vocal tract's do.
Formants change over time, so each block of a few milliseconds is filtered by
the resonators of its own moment (see `formant_cascade`), all blocks at once.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from sers.synth.speakers import Speaker, Style
from sers.synth.utterance import Controls

__all__ = ["glottal_source", "formant_cascade", "render"]

# F4 and F5 of the reference (adult male) tract; bandwidths of F1..F5 in Hz.
_HIGH_FORMANTS = (3400.0, 4300.0)
_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 220.0, 300.0])
_BLOCK_SECONDS = 0.01
_RING_SECONDS = 0.03            # impulse response kept: F1 (70 Hz wide) decays 57 dB
_REFERENCE_RMS = 0.05          # vowel RMS of a 0 dB utterance (about -26 dBFS)
_NOISE_FLOOR_RMS = 0.0006      # background noise (about -64 dBFS)


def glottal_source(f0: np.ndarray, open_quotient: float, jitter: float, shimmer: float,
                   sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Glottal flow and its time derivative for an F0 track (Hz per sample).

    Rosenberg (1971) pulses: the folds open over 60 % of the open phase with a
    raised cosine and close over the rest with a quarter cosine; the closure is
    the sharp event that excites the tract. Jitter perturbs each cycle's
    length, shimmer its amplitude.
    """
    nominal_cycles = np.cumsum(f0) / sample_rate
    n_cycles = int(nominal_cycles[-1]) + 2
    period_jitter = rng.normal(0.0, jitter, n_cycles)
    phase = np.cumsum(f0 * (1.0 + period_jitter[nominal_cycles.astype(int)])) / sample_rate
    cycle = phase.astype(int)
    within = phase - cycle
    opening, closing = 0.6 * open_quotient, 0.4 * open_quotient
    flow = np.where(within < opening, 0.5 * (1.0 - np.cos(np.pi * within / opening)),
                    np.where(within < open_quotient,
                             np.cos(0.5 * np.pi * (within - opening) / closing), 0.0))
    amplitude = np.clip(1.0 + rng.normal(0.0, shimmer, int(phase[-1]) + 2), 0.2, None)
    flow *= amplitude[cycle]
    # Scaling by the period keeps the derivative's size independent of F0.
    derivative = np.diff(flow, prepend=0.0) * sample_rate / f0
    return flow, derivative


def _cascade_response(formants: np.ndarray, bandwidths: np.ndarray, n_fft: int,
                      sample_rate: int) -> np.ndarray:
    """Frequency response (..., n_fft // 2 + 1) of a cascade of Klatt resonators.

    Each formant is the 2nd-order IIR resonator
        H_k(z) = (1 + a1 + a2) / (1 + a1 z^-1 + a2 z^-2),
        a1 = -2 r cos(2 pi F_k / fs), a2 = r^2, r = exp(-pi B_k / fs),
    with unity gain at 0 Hz (Klatt 1980); formants: (..., K) Hz. The cascade's
    denominator is the product of the K quadratics, a polynomial of degree 2K,
    evaluated on the FFT grid by one FFT.
    """
    radius = np.exp(-np.pi * bandwidths / sample_rate)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * formants / sample_rate)
    a2 = np.broadcast_to(radius ** 2, a1.shape)
    denominator = np.ones(formants.shape[:-1] + (1,))
    for k in range(formants.shape[-1]):
        product = np.zeros(denominator.shape[:-1] + (denominator.shape[-1] + 2,))
        product[..., :-2] += denominator
        product[..., 1:-1] += a1[..., k, None] * denominator
        product[..., 2:] += a2[..., k, None] * denominator
        denominator = product
    gain = np.prod(1.0 + a1 + a2, axis=-1)
    return gain[..., None] / np.fft.rfft(denominator, n_fft, axis=-1)


def formant_cascade(source: np.ndarray, formant_times: np.ndarray, formants: np.ndarray,
                    bandwidths: np.ndarray, sample_rate: int) -> np.ndarray:
    """Filter `source` through resonators whose frequencies follow the anchors.

    formants: (m, K) Hz at `formant_times` (samples), interpolated linearly to
    each block's centre; bandwidths: (K,) Hz. Every few-ms block of the source
    is convolved with the impulse response of the resonators of its own time
    (its first 30 ms, by when the narrowest formant has decayed by 57 dB) and the
    ringing tails overlap-add into the following blocks, the way a tract that
    keeps changing shape carries each excitation's ringing forward. Done for all
    blocks at once with FFTs, instead of one IIR call per block.
    """
    n = len(source)
    block = max(1, int(_BLOCK_SECONDS * sample_rate))
    n_blocks = -(-n // block)
    n_fft = block + int(_RING_SECONDS * sample_rate)
    centres = np.minimum(np.arange(n_blocks) * block + block / 2, n - 1)
    tracks = np.stack([np.interp(centres, formant_times, formants[:, k])
                       for k in range(formants.shape[1])], axis=1)
    blocks = np.zeros((n_blocks, block))
    blocks.flat[:n] = source
    spectra = np.fft.rfft(blocks, n_fft, axis=1) * _cascade_response(tracks, bandwidths, n_fft, sample_rate)
    pieces = np.fft.irfft(spectra, n_fft, axis=1)
    # Overlap-add: block b's output starts at b * block and rings on for n_fft samples.
    out = np.zeros(n_blocks * block + n_fft)
    for offset in range(0, n_fft, block):
        width = min(block, n_fft - offset)
        segment = out[offset:offset + n_blocks * block].reshape(n_blocks, block)
        segment[:, :width] += pieces[:, offset:offset + width]
    return out[:n]


@lru_cache(maxsize=64)
def _band_sos(low: float, high: float, sample_rate: int) -> np.ndarray:
    nyquist = sample_rate / 2
    high = min(high, 0.95 * nyquist)
    low = min(low, 0.7 * high)
    return butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")


def _frication(controls: Controls, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for f in controls.frications:
        length = f.end - f.start
        if length <= 0:
            continue
        noise = sosfilt(_band_sos(*f.band, sample_rate), rng.standard_normal(length + 64))[64:]
        noise /= np.sqrt(np.mean(noise ** 2)) + 1e-12
        t = np.arange(length) / sample_rate
        if f.burst:
            envelope = np.exp(-t / 0.004)
        else:   # rise and fall over the first and last quarter
            edge = max(1, length // 4)
            envelope = np.minimum(1.0, np.minimum(np.arange(length) + 1, length - np.arange(length)) / edge)
        out[f.start:f.end] += f.gain * envelope * noise
    return out


def render(controls: Controls, speaker: Speaker, style: Style, sample_rate: int,
           rng: np.random.Generator) -> np.ndarray:
    """The waveform (float, about -26 dBFS in vowels at 0 dB level) for the controls."""
    n = len(controls.f0)
    flow, pulses = glottal_source(controls.f0, style.open_quotient, style.jitter, style.shimmer,
                                  sample_rate, rng)
    # Spectral tilt: a one-pole low-pass; lax / sad voices roll off more.
    voiced = lfilter([1.0 - style.tilt], [1.0, -style.tilt], pulses)
    breath = rng.standard_normal(n) * (controls.aspiration * 3.0
                                       + controls.voicing * style.breathiness * 4.0 * (0.3 + flow))
    source = voiced * controls.voicing + breath

    scale = speaker.formant_scale
    high = np.broadcast_to(np.array(_HIGH_FORMANTS) * scale, (len(controls.formants), 2))
    formants = np.concatenate([controls.formants, high], axis=1)
    # At low sample rates the upper formants would pass Nyquist; parked just below
    # it, their resonators only tilt the top of the band.
    formants = np.minimum(formants, 0.45 * sample_rate)
    bandwidths = _BANDWIDTHS * (1.0 + np.array([2.0, 1.0, 0.5, 0, 0]) * style.breathiness)
    tract = formant_cascade(source, controls.formant_times, formants, bandwidths, sample_rate)
    vowel_rms = np.sqrt(np.mean(tract[controls.vowel_mask] ** 2)) + 1e-12
    # Frication is set relative to the vowels: a full-strength /s/ about 12 dB below.
    speech = tract / vowel_rms + 0.25 * _frication(controls, n, sample_rate, rng)

    recording_gain_db = rng.normal(0.0, 2.0)       # microphone distance, not emotion
    level = _REFERENCE_RMS * 10 ** ((style.level_db + recording_gain_db) / 20)
    noise = lfilter([1.0], [1.0, -0.9], rng.standard_normal(n)) * np.sqrt(1 - 0.81)
    audio = speech * level + noise * _NOISE_FLOOR_RMS * 10 ** (rng.normal(0, 3) / 20)
    peak = np.max(np.abs(audio))
    return audio * (0.98 / peak) if peak > 0.98 else audio
