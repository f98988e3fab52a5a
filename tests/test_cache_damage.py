"""Nothing silently wrong: corrupted frames after a kill, lost and damaged chunks, HDF5 on a full disk.

An HDF5 cache is extracted into a zarr journal and converted when complete; a resume reads every
finished row first and extracts again the ones whose chunks are missing, damaged, or whose frames
do not average to their pooled mean. Readers name the cache, the array and the utterances of a
missing or damaged chunk in one line.
"""
import errno
import os
import re

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import sers.cache
import sers.cache.journal as journal
import sers.cache.schema as schema
import sers.pipeline.extract_run as extract_run
from bad_inputs import damage_chunk
from sers.cli import main
from sers.errors import SersError
from sers.inputs.manifest import read_manifest
from sers.pipeline.extract import extract
from test_reliability import _corpus
from tiny_models import tiny_model  # noqa: F401  (pytest fixture)

OPTIONS = dict(workers=0, progress=False, batch_seconds=2.0, pooled_chunk_rows=2, frame_layers="all",
               pool_stats=["mean", "std"])


@pytest.fixture
def small_frame_chunks(monkeypatch):
    """64 frames per chunk (as the user's report): an utterance's frames span chunks shared with others."""
    monkeypatch.setattr(schema, "frame_chunk_rows", lambda hidden_size: 64)


def _extract(model, manifest_path, out, log=None, **options):
    lines = [] if log is None else log
    return extract(read_manifest(manifest_path), str(model), out, log=lines.append, **{**OPTIONS, **options})


def _features(path) -> dict:
    """Every stored number, by utterance id: pooled statistics and the frames of every stored layer."""
    with sers.cache.open(path) as cache:
        out = {}
        for row, uid in enumerate(cache.utterances.id):
            pooled = [cache.pooled_layers(range(cache.num_layers), stat=stat, rows=[row])[:, 0]
                      for stat in cache.pool_stats]
            out[uid] = pooled + [cache.frames(uid, layer) for layer in cache.frame_layers]
        return out


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


def _interrupt_after(monkeypatch, batches: int):
    """Stop the run as Ctrl-C does, before batch number ``batches`` + 1 (``monkeypatch``: a context)."""
    real, calls = extract_run._check_space_left, []

    def check(path, reserve):
        calls.append(1)
        if len(calls) > batches:
            raise KeyboardInterrupt
        real(path, reserve)

    monkeypatch.setattr(extract_run, "_check_space_left", check)


@pytest.fixture
def corpus(tmp_path, tiny_model, small_frame_chunks):
    """The tiny model, 8 utterances and an uninterrupted cache of each back-end to compare with."""
    model, m = tiny_model("wavlm"), _corpus(tmp_path / "a", n=8)
    references = {suffix: tmp_path / f"reference{suffix}" for suffix in (".zarr", ".h5")}
    for path in references.values():
        _extract(model, m, path)
    return model, m, {suffix: _features(path) for suffix, path in references.items()}


# -- HDF5: a journal, verified before it is trusted ---------------------------------------------------

def test_an_interrupted_hdf5_cache_lives_in_its_journal_and_corrupted_frames_are_redone(tmp_path, corpus,
                                                                                         monkeypatch):
    model, m, reference = corpus
    out = tmp_path / "c.h5"
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        _interrupt_after(patch, 3)
        _extract(model, m, out)
    assert not out.exists() and journal.journal_path(out).is_dir()
    with sers.cache.open(out) as cache:  # readers see the journal: an unfinished cache
        assert not cache.complete
        table = cache.all_utterances
    finished = np.flatnonzero(table.done & (table.n_frames > 0))
    row = int(finished[-1])
    start, stop = int(table.frame_offset[row]), int(table.n_frames[row]) + int(table.frame_offset[row])
    assert start // 64 != (stop - 1) // 64 or start % 64, "the corrupted span should not be one whole chunk"
    # What libhdf5 left after a kill: a finished utterance's frames replaced by other numbers.
    frames = zarr.open_group(str(journal.journal_path(out)), mode="r+")["frames/layer_1"]
    frames[start:stop] = np.asarray(frames[start:stop]) + 4
    log = []
    _extract(model, m, out, log=log)
    assert any(f"frames/layer_1 of 1 finished utterance(s) ({table.id[row]}) do not average to the stored pooled mean"
               in line for line in log), log
    assert out.is_file() and not journal.journal_path(out).exists()
    assert _same(_features(out), reference[".h5"])


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_no_space_mid_write_is_one_line_keeps_the_rows_and_resumes(tmp_path, corpus, monkeypatch, suffix):
    model, m, reference = corpus
    out = tmp_path / f"c{suffix}"
    real_flush, calls = sers.cache.CacheWriter.flush, []

    def flush(self):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.store / "pooled" / "mean"))
        real_flush(self)

    with monkeypatch.context() as patch:
        patch.setattr(sers.cache.CacheWriter, "flush", flush)
        patch.setattr(schema, "pooled_chunk_rows", lambda hidden_size: 2)  # rows are done 2 at a time
        result = CliRunner().invoke(main, ["extract", "--model", str(model), "--manifest", str(m), "--out", str(out),
                                           "--workers", "0", "--quiet", "--batch-seconds", "2", "--frame-layers",
                                           "all", "--pool", "mean,std"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert "no space left on the device" in errors[0] and "every finished utterance is kept" in errors[0]
    kept = int(sers.cache.open(out).all_utterances.done.sum())
    assert kept > 0
    log = []
    _extract(model, m, out, log=log)
    assert f"resuming {out}: {8 - kept} of 8 utterances left" in log
    assert _same(_features(out), reference[suffix])


def test_no_space_for_the_hdf5_copy_is_one_line_and_the_rerun_converts(tmp_path, corpus, monkeypatch):
    model, m, reference = corpus
    out = tmp_path / "c.h5"

    with monkeypatch.context() as patch, pytest.raises(
            SersError, match=r"not enough space to write the HDF5 file from its finished journal .*"
                             r"every utterance is kept in .*c\.h5\.journal\.zarr"):
        patch.setattr(journal, "_free_bytes", lambda folder: 1024)
        _extract(model, m, out)
    assert not out.exists() and sers.cache.open(out).complete  # the finished journal
    # libhdf5 failing in the helper process: with no space, or by crashing, as it does after a failed write
    for helper, message in [
            ("import sys, json; print(json.dumps({'type': 'OSError', 'errno': 28, 'message': 'No space left'}),"
             " file=sys.stderr); sys.exit(1)", "no space left on the device while writing the HDF5 file"),
            ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", r"the HDF5 library crashed \(signal 11\)")]:
        with monkeypatch.context() as patch, pytest.raises(SersError, match=message):
            patch.setattr(journal, "HELPER", helper)
            _extract(model, m, out)
        assert not out.exists() and not journal.partial_path(out).exists()
    log = []
    summary = _extract(model, m, out, log=log)
    assert summary.already_complete and out.is_file() and not journal.journal_path(out).exists()
    assert _same(_features(out), reference[".h5"])


# -- lost and damaged chunks: one line, and `sers extract` repairs ---------------------------------------

@pytest.mark.parametrize("suffix, array, how", [
    (".zarr", "pooled/mean", "delete"), (".zarr", "frames/layer_2", "truncate"),
    (".zarr", "pooled/std", "flip"), (".h5", "pooled/mean", "flip"), (".h5", "frames/layer_0", "flip")])
def test_a_lost_or_damaged_chunk_is_one_line_and_extract_repairs_it(tmp_path, corpus, suffix, array, how):
    model, m, reference = corpus
    out = tmp_path / f"c{suffix}"
    _extract(model, m, out)
    rows = damage_chunk(out, array, how)
    with sers.cache.open(out) as cache:
        ids = list(cache.all_utterances.id[rows])
        with pytest.raises(SersError) as caught:
            if array.startswith("pooled/"):
                cache.pooled_layers(range(cache.num_layers), stat=array.split("/")[1])
            else:
                cache.frame_block(int(array.rsplit("_", 1)[1]), range(len(cache.utterances)))
    message = str(caught.value)
    assert "\n" not in message and str(out) in message and array in message and ids[0] in message
    assert ("missing" if how == "delete" else "cannot be decoded") in message
    assert f"rerun the `sers extract` command that made it, with the same options and --out {out}" in message
    log = []
    _extract(model, m, out, log=log)
    assert any(f"{array} of {len(ids)} finished utterance(s) ({ids[0]}" in line for line in log), log
    assert f"resuming {out}: {len(ids)} of 8 utterances left" in log
    assert _same(_features(out), reference[suffix]) and not journal.journal_path(out).exists()


def test_similarity_on_a_cache_with_a_lost_chunk_is_one_line(tmp_path, corpus):
    model, m, _ = corpus
    source, target = tmp_path / "s.zarr", tmp_path / "t.zarr"
    for path in (source, target):
        _extract(model, m, path, frame_layers="none", pool_stats=["mean"])
    damage_chunk(target, "pooled/mean", "delete")
    result = CliRunner().invoke(main, ["similarity", str(source), str(target), "-o", str(tmp_path / "sim"),
                                       "--measures", "coral"])
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip() and "%|" not in line]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "pooled/mean: 1 chunk(s) missing" in lines[0] and str(target) in lines[0] and "u2, u3" in lines[0]


def test_older_caches_without_every_chunk_stored_are_read_as_before(tmp_path):
    """Caches of an older sers left out chunks that were all fill (unlabelled rows: empty labels)."""
    path = tmp_path / "old.zarr"
    sers.cache.from_arrays(path, np.ones((2, 4, 3)), {"id": list("abcd")}, model_id="m")
    root = zarr.open_group(str(path), mode="r+")
    del root.attrs[schema.EVERY_CHUNK_ATTR]
    os.remove(path / "utterances" / "label" / "c" / "0")  # all "": an older zarr never stored it
    with sers.cache.open(path) as cache:
        assert list(cache.utterances.label) == [""] * 4 and cache.pooled(1).shape == (4, 3)


def test_the_frame_check_allows_float16_rounding_and_strides_but_not_other_numbers():
    from sers.cache.integrity import frames_agree

    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 12])
    full = rng.normal(scale=30, size=(lengths.sum(), 16)).astype(np.float32)
    starts = np.cumsum(lengths) - lengths
    pooled = np.stack([full[s:s + n].mean(0) for s, n in zip(starts, lengths)])
    stored = full.astype(np.float16)
    assert frames_agree(stored, starts, lengths, pooled).all()
    wrong = stored.copy()
    wrong[starts[2] + 3] += np.float16(4)
    assert frames_agree(wrong, starts, lengths, pooled).tolist() == [True, True, False]
    # stride 3: 12 frames of the last row stored as 4 means; a row of 5 as 2 (the last of 2 frames)
    strided = [full[s:s + n] for s, n in zip(starts, lengths)]
    means = [np.stack([x[i:i + 3].mean(0) for i in range(0, len(x), 3)]) for x in strided]
    block = np.concatenate(means).astype(np.float16)
    stored_lengths = np.array([len(x) for x in means])
    assert frames_agree(block, np.cumsum(stored_lengths) - stored_lengths, stored_lengths, pooled, stride=3).all()


def test_segments_of_an_hdf5_cache_are_added_to_a_copy_that_replaces_it_whole(tmp_path):
    from bad_inputs import digest
    from test_cache_sealed import _cache_with_frames

    path = _cache_with_frames(tmp_path / "c.h5")
    before = digest(path)
    columns = {"utterance": [0, 2], "start_frame": [0, 0], "end_frame": [2, 1], "start": [0.0, 0.0],
               "end": [0.04, 0.02], "phone": ["AA1", "IY0"], "vowel": ["a", "i"]}
    pooled = np.ones((1, 2, 4), np.float32)
    with pytest.raises(KeyboardInterrupt), sers.cache.SegmentsWriter(path, [0]) as writer:
        writer.append(columns, pooled)
        with sers.cache.open(path) as cache:  # readers read the file as it was meanwhile
            assert not cache.has_segments
        raise KeyboardInterrupt
    assert digest(path) == before and not journal.journal_path(path).exists()
    with sers.cache.SegmentsWriter(path, [0]) as writer:
        writer.append(columns, pooled)
        writer.finish()
    assert not journal.journal_path(path).exists()
    with sers.cache.open(path) as cache:
        assert list(cache.segments.vowel) == ["a", "i"] and cache.segment_pooled(0).shape == (2, 4)


def test_a_repair_redoes_the_rows_with_their_vowel_segments_and_strided_frames_pass_the_check(tmp_path, tiny_model):
    from sers.synth import synthesize_corpus

    corpus = synthesize_corpus(tmp_path / "corpus", utterances_per_language=6, speakers_per_language=3)
    model = tiny_model("wavlm")
    options = dict(frame_layers=[0, 2], frame_stride=2, alignments=corpus["en"].parent / "textgrid",
                   vowel_map="en-ipa")
    reference, out = tmp_path / "reference.zarr", tmp_path / "c.zarr"
    for path in (reference, out):
        _extract(model, corpus["en"], path, **options)

    def segments(path):
        with sers.cache.open(path) as cache:
            table = cache.segments
            keys = list(zip(table.id, table.start_frame, table.phone))
            return {key: cache.segment_pooled(2, rows=[i])[0] for i, key in enumerate(keys)}

    log = []
    assert _extract(model, corpus["en"], out, log=log, **options).already_complete  # strided frames agree
    assert not [line for line in log if "extracting them again" in line]
    rows = damage_chunk(out, "pooled/mean", "delete")
    log = []
    _extract(model, corpus["en"], out, log=log, **options)
    assert f"resuming {out}: {len(rows)} of 6 utterances left" in log
    expected, got = segments(reference), segments(out)
    assert expected.keys() == got.keys() and all(np.array_equal(expected[k], got[k]) for k in expected)
    assert _same(_features(out), _features(reference))
