"""A Hugging Face datasets folder read as a manifest."""
import numpy as np
import pytest
import soundfile as sf

from sers.inputs.corpora import read_corpus
from sers.errors import SersError
from sers.inputs.manifest import Utterance



@pytest.fixture()
def wavs(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"rec{i}.wav")
        sf.write(paths[-1], np.random.default_rng(i).normal(0, 0.1, 16000 * (i + 1)).astype(np.float32), 16000)
    return paths


def test_hf_datasets_folder_with_splits_and_class_labels(tmp_path, wavs):
    datasets = pytest.importorskip("datasets")
    # a path column (`wav`, as EmoBox names it): an Audio feature needs torchcodec to be written
    features = datasets.Features({"wav": datasets.Value("string"), "emotion": datasets.ClassLabel(names=["N", "H", "A"]),
                                  "speaker": datasets.Value("string")})
    part = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"wav": [str(wavs[i]) for i in rows], "emotion": [i for i in rows], "speaker": [f"s{i}" for i in rows]},
        features=features)
    datasets.DatasetDict({"train": part([0, 1]), "test": part([2])}).save_to_disk(str(tmp_path / "ds"))
    utterances = read_corpus(tmp_path / "ds", format="hf-datasets", language="en")
    assert utterances == [Utterance("rec0", str(wavs[0]), label="N", split="train", speaker="s0", language="en"),
                          Utterance("rec1", str(wavs[1]), label="H", split="train", speaker="s1", language="en"),
                          Utterance("rec2", str(wavs[2]), label="A", split="test", speaker="s2", language="en")]
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "no-audio"))
    with pytest.raises(SersError, match="no audio column"):
        read_corpus(tmp_path / "no-audio", format="hf-datasets")
