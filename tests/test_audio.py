"""Audio loading: formats, mono mix-down, exact segments, anti-aliased resampling, errors."""

import numpy as np
import pytest
import soundfile

from sers.inputs.audio import audio_info, load_audio, num_samples_after_resampling
from sers.errors import SersError


def tone(frequency: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write(path, samples, rate, subtype="FLOAT"):
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return path


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def test_audio_info_reads_the_header_for_files_and_segments(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 22050, 2.0), 22050, "PCM_16")
    assert audio_info(path) == (44100, 22050, 2.0)
    assert audio_info(path, start=0.5, end=1.5) == (22050, 22050, 1.0)
    assert audio_info(path, start=1.0) == (22050, 22050, 1.0)
    assert audio_info(path, end=0.25)[0] == round(0.25 * 22050)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("length", [1, 3, 1001, 22051, 44099])
def test_predicted_length_equals_loaded_length(tmp_path, rate, length):
    samples = np.random.default_rng(length).uniform(-0.5, 0.5, length).astype(np.float32)
    path = write(tmp_path / "x.wav", samples, rate)
    native, native_rate, _ = audio_info(path)
    assert len(load_audio(path, 16000)) == num_samples_after_resampling(native, native_rate, 16000)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_predicted_length_equals_loaded_length_for_segments(tmp_path, rate):
    path = write(tmp_path / "x.flac", tone(300, rate, 1.37), rate, "PCM_16")
    for start, end in [(0.0, 0.3331), (0.1237, 1.0), (0.5, None), (None, 0.00017)]:
        native, native_rate, _ = audio_info(path, start, end)
        wave = load_audio(path, 16000, start, end)
        assert len(wave) == num_samples_after_resampling(native, native_rate, 16000), (start, end)


def test_loaded_length_is_pinned_where_libsoxr_rounds_a_tie_down(tmp_path):
    # 17660 samples at 12 kHz are 64900.5 samples at 44.1 kHz; libsoxr's float arithmetic gives 64900.
    path = write(tmp_path / "tie.wav", tone(300, 12000, 17660 / 12000), 12000)
    assert len(load_audio(path, 44100)) == num_samples_after_resampling(17660, 12000, 44100) == 64901


def test_num_samples_after_resampling_rounds_exactly():
    assert num_samples_after_resampling(44100, 44100, 16000) == 16000
    assert num_samples_after_resampling(3, 48000, 16000) == 1
    assert num_samples_after_resampling(1, 32000, 16000) == 1       # 0.5 rounds up
    assert num_samples_after_resampling(17660, 12000, 44100) == 64901  # 64900.5, where floats drift
    assert num_samples_after_resampling(12345, 16000, 16000) == 12345
    assert num_samples_after_resampling(1001, 8000, 16000) == 2002


def test_segment_cut_is_sample_exact(tmp_path):
    rate, marker = 16000, 12345
    samples = np.zeros(3 * rate, dtype=np.float32)
    samples[marker] = 1.0
    path = write(tmp_path / "marker.wav", samples, rate)
    segment = load_audio(path, rate, start=0.5, end=1.0)
    assert len(segment) == 8000
    assert np.flatnonzero(segment).tolist() == [marker - 8000]
    assert np.flatnonzero(load_audio(path, rate, start=marker / rate)).tolist() == [0]
    assert np.flatnonzero(load_audio(path, rate, end=marker / rate)).tolist() == []


def test_segments_are_read_by_seeking_not_by_decoding_the_whole_file(tmp_path, monkeypatch):
    path = write(tmp_path / "long.flac", tone(440, 16000, 10.0), 16000, "PCM_16")
    reads = []  # (position before the read, frames asked for)
    read = soundfile.SoundFile.read
    monkeypatch.setattr(soundfile.SoundFile, "read",
                        lambda f, frames=-1, **kw: reads.append((f.tell(), frames)) or read(f, frames, **kw))
    assert len(load_audio(path, 16000, start=7.0, end=7.5)) == 8000
    assert reads == [(112000, 8000)]


def test_segment_of_a_resampled_file_keeps_the_marker_in_place(tmp_path):
    rate, marker = 48000, 30000
    samples = np.zeros(rate, dtype=np.float32)
    samples[marker - 30: marker + 30] = np.hanning(60)   # a smooth bump survives the low-pass
    path = write(tmp_path / "bump.wav", samples, rate)
    segment = load_audio(path, 16000, start=0.25)
    assert int(np.argmax(segment)) == (marker - 12000) // 3


def test_stereo_and_multichannel_are_averaged_to_mono(tmp_path):
    left, right = tone(440, 16000, 0.5), tone(660, 16000, 0.5, 0.25)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-7)

    four = np.stack([left, -left, right, right], axis=1)
    path = write(tmp_path / "quad.wav", four, 16000)
    np.testing.assert_allclose(load_audio(path, 16000), right / 2, atol=1e-7)


def test_pcm_flac_and_aiff_decode_to_the_same_float_signal(tmp_path):
    signal = tone(440, 16000, 0.3)
    for name, subtype in [("a.wav", "PCM_16"), ("a.flac", "PCM_16"), ("a.aiff", "PCM_16")]:
        wave = load_audio(write(tmp_path / name, signal, 16000, subtype), 16000)
        np.testing.assert_allclose(wave, signal, atol=1 / 2 ** 15)


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(np.abs(np.fft.rfft(wave)))])


def test_resampler_removes_energy_above_the_new_nyquist(tmp_path):
    # 9 kHz cannot exist at 16 kHz (Nyquist 8 kHz): dropping samples would fold it onto 7 kHz.
    high = tone(9000, 48000, 1.0)
    path = write(tmp_path / "high.wav", high, 48000)
    naive = high[::3]
    assert power(naive) > 0.9 * power(high) and peak_frequency(naive, 16000) == pytest.approx(7000, abs=2)
    assert power(load_audio(path, 16000)) < 0.01 * power(high)


@pytest.mark.parametrize("frequency", [1000, 7000])
def test_resampler_keeps_a_tone_below_the_new_nyquist(tmp_path, frequency):
    low = tone(frequency, 48000, 1.0)
    wave = load_audio(write(tmp_path / "low.wav", low, 48000), 16000)
    assert power(wave) == pytest.approx(power(low), rel=0.02)
    assert peak_frequency(wave, 16000) == pytest.approx(frequency, abs=2)
    np.testing.assert_allclose(wave[200:-200], tone(frequency, 16000, 1.0)[200:-200], atol=0.01)


def test_upsampling_from_8k(tmp_path):
    wave = load_audio(write(tmp_path / "narrow.wav", tone(500, 8000, 0.5), 8000), 16000)
    assert len(wave) == 8000
    np.testing.assert_allclose(wave[100:-100], tone(500, 16000, 0.5)[100:-100], atol=0.01)


def test_end_slightly_past_the_file_is_cut_at_the_end(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 16000, 1.0), 16000)
    assert len(load_audio(path, 16000, start=0.5, end=1.005)) == 8000
    assert audio_info(path, 0.5, 1.005)[0] == 8000


def both_readers(path, start=None, end=None):
    """Every check applies to the header reader and the decoder alike."""
    yield lambda: audio_info(path, start, end)
    yield lambda: load_audio(path, 16000, start, end)


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.wav: audio file not found"),
    ("corrupt", "corrupt.wav: cannot read audio (Format not recognised)"),
    ("folder", "folder.wav: is a folder, not an audio file"),
    ("empty", "empty.wav: contains no audio (0 samples)"),
    ("start after end of file", "a.wav: segment starts at 2 s, after the end of the file (1.000 s)"),
    ("end past end of file", "a.wav: segment ends at 1.5 s, past the end of the file (1.000 s)"),
    ("segment shorter than a sample", "a.wav: segment [0.5, 0.50001) s holds no samples at 16000 Hz"),
])
def test_unreadable_audio_raises_a_one_line_error_with_path_and_reason(tmp_path, case, message):
    write(tmp_path / "a.wav", tone(440, 16000, 1.0), 16000)
    (tmp_path / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "folder.wav").mkdir()
    write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    path, start, end = {
        "start after end of file": ("a.wav", 2.0, None),
        "end past end of file": ("a.wav", 0.5, 1.5),
        "segment shorter than a sample": ("a.wav", 0.5, 0.50001),
    }.get(case, (f"{case}.wav", None, None))
    for read in both_readers(tmp_path / path, start, end):
        with pytest.raises(SersError) as error:
            read()
        assert str(error.value) == f"{tmp_path / path}: {message.split(': ', 1)[1]}"
