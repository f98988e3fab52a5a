"""A lhotse CutSet read as a manifest."""
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import sers.cache
from sers.cli import main
from sers.inputs.corpora import read_corpus
from sers.inputs.manifest import Utterance

from tiny_models import tiny_model  # noqa: F401  (pytest fixture)


@pytest.fixture()
def wavs(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"rec{i}.wav")
        sf.write(paths[-1], np.random.default_rng(i).normal(0, 0.1, 16000 * (i + 1)).astype(np.float32), 16000)
    return paths


def test_lhotse_cutset_gives_segments_labels_and_splits(tmp_path, wavs, tiny_model):
    lhotse = pytest.importorskip("lhotse")
    cuts = []
    for i, wav in enumerate(wavs):
        recording = lhotse.Recording.from_file(wav)
        start, duration = (0.0, recording.duration) if i < 2 else (0.5, 1.0)
        supervision = lhotse.SupervisionSegment(id=f"s{i}", recording_id=recording.id, start=0, duration=duration,
                                                speaker=f"spk{i % 2}", language="en",
                                                custom={"emotion": "HNA"[i], "split": "train" if i else "dev"})
        cuts.append(lhotse.MonoCut(id=f"cut{i}", start=start, duration=duration, channel=0, recording=recording,
                                   supervisions=[supervision]))
    lhotse.CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    utterances = read_corpus(tmp_path / "cuts.jsonl.gz", format="lhotse")
    assert utterances[0] == Utterance("cut0", str(wavs[0]), label="H", split="dev", speaker="spk0", language="en")
    assert (utterances[2].start, utterances[2].end) == (0.5, 1.5) and utterances[2].label == "A"
    result = CliRunner().invoke(main, ["extract", "--model", str(tiny_model("wavlm")), "--format", "lhotse",
                                       "--manifest", str(tmp_path / "cuts.jsonl.gz"), "--out", str(tmp_path / "c.zarr"),
                                       "--workers", "0"])
    assert result.exit_code == 0, result.output
    with sers.cache.open(tmp_path / "c.zarr") as cache:
        assert sorted(cache.utterances.id) == ["cut0", "cut1", "cut2"] and cache.splits == ["dev", "train"]
        assert cache.utterances.duration[list(cache.utterances.id).index("cut2")] == pytest.approx(1.0)
