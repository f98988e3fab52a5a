"""Vowel segments end to end: `sers extract --alignments`, `sers segments`, `sers inspect`.

A generated corpus (exact phone boundaries) and a tiny WavLM; two extractions in all.
"""
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import sers.cache
from sers.inputs.alignments import frame_span
from sers.cli import main
from sers.pipeline.segments import read_segment_attrs
from sers.synth import LANGUAGES, synthesize_corpus, vowel_classes
from sers.inputs.textgrid import IntervalTier, TextGrid, read_textgrid, write_textgrid
from tiny_models import tiny_model  # noqa: F401  (pytest fixture)


def _sers(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthesize_corpus(tmp_path_factory.mktemp("corpus"), utterances_per_language=8, speakers_per_language=4)


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("wavlm")


@pytest.fixture(scope="module")
def en_cache(corpus, model, tmp_path_factory):
    """English, every layer's frames stored, segments computed during extraction (zarr)."""
    out = tmp_path_factory.mktemp("en") / "en.zarr"
    result = _sers("extract", "--model", model, "--manifest", corpus["en"], "--out", out, "--workers", 0,
                   "--quiet", "--frame-layers", "all", "--alignments", corpus["en"].parent / "textgrid",
                   "--vowel-map", "en-ipa")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def zh_cache(corpus, model, tmp_path_factory):
    """Mandarin, frames of layers 0 and 2 at stride 2, one TextGrid missing (HDF5)."""
    folder = tmp_path_factory.mktemp("zh")
    textgrids = folder / "textgrid"
    shutil.copytree(corpus["zh"].parent / "textgrid", textgrids)
    removed = sorted(textgrids.glob("*.TextGrid"))[0]
    removed.unlink()
    out = folder / "zh.h5"
    result = _sers("extract", "--model", model, "--manifest", corpus["zh"], "--out", out, "--workers", 0,
                   "--quiet", "--frame-layers", "0,2", "--frame-stride", 2, "--alignments", textgrids,
                   "--vowel-map", "cmn-ipa")
    assert result.exit_code == 0, result.output
    return out, textgrids, removed.stem, result.output


def _expected_segments(textgrid_folder, ids, code, n_frames):
    """(id, start, end, phone, class, first frame, stop frame) of every classed vowel, from the TextGrids."""
    classes = vowel_classes(LANGUAGES[code])
    rows = []
    for uid in ids:
        for iv in read_textgrid(textgrid_folder / f"{uid}.TextGrid").tier("phones").intervals:
            if iv.label in classes:
                rows.append((uid, iv.start, iv.end, iv.label, classes[iv.label],
                             *frame_span(iv.start, iv.end, 50, n_frames[uid])))
    return sorted(rows)


def test_extraction_stores_every_vowel_with_its_exact_times_and_frames(corpus, en_cache):
    out, output = en_cache
    with sers.cache.open(out) as cache:
        table, segments = cache.utterances, cache.segments
        assert cache.segment_layers == [0, 1, 2]
        n_frames = dict(zip(table.id, table.n_frames))  # stride 1: stored frames = model frames
        expected = _expected_segments(corpus["en"].parent / "textgrid", table.id, "en", n_frames)
        stored = sorted(zip(segments.id, segments.start, segments.end, segments.phone, segments.vowel,
                            segments.start_frame, segments.end_frame))
        assert stored == expected
        assert set(segments.label) <= {"N", "H", "A", "S"} and set(segments.language) == {"en"}
    counts = {c: sum(1 for row in expected if row[4] == c) for c in "aeiou"}
    assert f"vowel segments: {len(expected)} (" + ", ".join(f"{c} {counts[c]}" for c in "aeiou" if counts[c]) \
        in output
    assert "vowels without a class (" in output and "other phones" in output
    attrs = read_segment_attrs(out)
    assert attrs["vowel_map"] == "en-ipa" and attrs["missing_alignments"] == [] and attrs["layers"] == [0, 1, 2]
    with sers.cache.open(out) as cache:
        assert cache.attrs["settings"]["alignments"]["phone_tier"] == "phones"


def test_segment_features_equal_a_hand_average_of_the_stored_frames(en_cache):
    out, _ = en_cache
    with sers.cache.open(out) as cache:
        segments = cache.segments
        picks = np.linspace(0, len(segments) - 1, 6).astype(int)
        for layer in range(3):
            pooled = cache.segment_pooled(layer, rows=picks)
            for i, row in enumerate(picks):
                frames = cache.frames(segments.id[row], layer)
                by_hand = frames[segments.start_frame[row]:segments.end_frame[row]].mean(axis=0)
                np.testing.assert_allclose(pooled[i], by_hand, atol=3e-3)  # frames are float16 on disk
            assert not np.allclose(pooled[0], pooled[1])


def test_sers_segments_recomputes_the_extraction_segments_from_frames(en_cache, tmp_path, corpus):
    out, _ = en_cache
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    textgrids = corpus["en"].parent / "textgrid"
    refused = _sers("segments", copy, "--alignments", textgrids, "--vowel-map", "en-ipa")
    assert refused.exit_code == 1 and "already has vowel segments" in refused.output
    result = _sers("segments", copy, "--alignments", textgrids, "--vowel-map", "en-ipa", "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    assert "from stored frames" in result.output and "vowel segments:" in result.output
    with sers.cache.open(out) as original, sers.cache.open(copy) as again:
        for name in ("id", "start_frame", "end_frame", "start", "end", "phone", "vowel"):
            np.testing.assert_array_equal(again.segments[name], original.segments[name])
        for layer in range(3):
            np.testing.assert_allclose(again.segment_pooled(layer), original.segment_pooled(layer), atol=3e-3)
    assert read_segment_attrs(copy)["computed_from"] == "stored frames"


def test_a_ctm_gives_the_same_segments_as_the_textgrids(en_cache, tmp_path, corpus):
    out, _ = en_cache
    lines = []
    for path in sorted((corpus["en"].parent / "textgrid").glob("*.TextGrid")):
        for iv in read_textgrid(path).tier("phones").labelled():
            lines.append(f"{path.stem} 1 {iv.start!r} {iv.end - iv.start!r} {iv.label}")
    (tmp_path / "en.ctm").write_text("\n".join(lines) + "\n", encoding="utf-8")
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    result = _sers("segments", copy, "--alignments", tmp_path / "en.ctm", "--vowel-map", "en-ipa", "--overwrite",
                   "--quiet")
    assert result.exit_code == 0, result.output
    with sers.cache.open(out) as original, sers.cache.open(copy) as again:
        for name in ("id", "start_frame", "end_frame", "phone", "vowel"):
            np.testing.assert_array_equal(again.segments[name], original.segments[name])
        np.testing.assert_allclose(again.segments.end, original.segments.end, atol=1e-9)


def test_stride_and_missing_alignment(zh_cache, corpus, tmp_path):
    out, textgrids, missing_id, output = zh_cache
    with sers.cache.open(out) as cache:
        assert missing_id in set(cache.utterances.id)  # extracted, just without segments
        assert missing_id not in set(cache.segments.id) and len(cache.segments) > 0
        assert cache.segment_layers == [0, 1, 2]       # every layer, from full-rate states
        assert set(cache.segments.vowel) <= set("aeiou")
    assert f"utterances without an alignment: 1 ({missing_id};" in output
    assert read_segment_attrs(out)["missing_alignments"] == [missing_id]

    # From the frames stored 2 apart: the stored frames start_frame // 2 .. ceil(end_frame / 2).
    copy = tmp_path / "zh.h5"
    shutil.copy(out, copy)
    result = _sers("segments", copy, "--alignments", textgrids, "--vowel-map", "cmn-ipa", "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    assert "frames are stored 2 model frames apart" in result.output
    with sers.cache.open(copy) as cache:
        segments = cache.segments
        assert cache.segment_layers == [0, 2]
        pooled = cache.segment_pooled(2)
        for row in range(0, len(segments), 7):
            frames = cache.frames(segments.id[row], 2)
            first, stop = segments.start_frame[row] // 2, math.ceil(segments.end_frame[row] / 2)
            np.testing.assert_allclose(pooled[row], frames[first:stop].mean(axis=0), atol=3e-3)


def test_inspect_shows_vowel_counts_by_language_vowel_and_emotion(en_cache):
    out, _ = en_cache
    result = _sers("inspect", out)
    assert result.exit_code == 0, result.output
    assert "vowel segments by language x vowel x emotion:" in result.output
    assert "vowel map en-ipa; 0 utterances without alignment" in result.output
    with sers.cache.open(out) as cache:
        segments = cache.segments
        labels = sorted(set(segments.label))
        table_rows = [line.split() for line in result.output.splitlines()]
        assert ["language", "vowel", *labels, "total"] in table_rows
        for vowel in sorted(set(segments.vowel)):
            cells = [int(((segments.vowel == vowel) & (segments.label == label)).sum()) for label in labels]
            assert ["en", vowel, *map(str, cells), str(sum(cells))] in table_rows, vowel


def test_resuming_with_other_alignments_is_refused(en_cache, corpus, model):
    out, _ = en_cache
    common = ["extract", "--model", model, "--manifest", corpus["en"], "--out", out, "--workers", 0, "--quiet",
              "--frame-layers", "all", "--alignments", corpus["en"].parent / "textgrid"]
    result = _sers(*common, "--vowel-map", "cmn-ipa")
    assert result.exit_code == 1 and "extracted with different settings: it was made with alignments=" in result.output
    assert "already complete" in _sers(*common, "--vowel-map", "en-ipa").output


def test_alignment_errors_stop_before_any_cache_is_written(corpus, model, tmp_path, en_cache):
    textgrids = corpus["en"].parent / "textgrid"
    out = tmp_path / "never.zarr"
    base = ["extract", "--model", model, "--manifest", corpus["en"], "--out", out, "--workers", 0, "--quiet"]
    result = _sers(*base, "--alignments", textgrids, "--vowel-map", "en-ipa", "--phone-tier", "phone")
    assert result.exit_code == 1 and "no tier 'phone'; tiers are 'words', 'phones'" in result.output
    assert not out.exists()
    result = _sers(*base, "--alignments", textgrids)
    assert result.exit_code == 1 and "--alignments needs --vowel-map" in result.output
    result = _sers(*base, "--vowel-map", "en-ipa")
    assert result.exit_code == 1 and "--vowel-map needs --alignments" in result.output

    # Phones past the audio: the alignment of another (longer) file.
    stretched = tmp_path / "stretched"
    stretched.mkdir()
    for path in textgrids.glob("*.TextGrid"):
        tier = read_textgrid(path).tier("phones")
        end = tier.end * 2
        grid = TextGrid(0.0, end, [IntervalTier("phones", 0.0, end, [type(iv)(iv.start * 2, iv.end * 2, iv.label)
                                                                    for iv in tier.intervals])])
        write_textgrid(grid, stretched / path.name)
    cache, _ = en_cache
    result = _sers("segments", cache, "--alignments", stretched, "--vowel-map", "en-ipa", "--overwrite")
    assert result.exit_code == 1
    assert "lies outside its audio" in result.output and "(and 7 more utterances)" in result.output
    with sers.cache.open(cache) as reader:  # the segments it had are untouched
        assert reader.has_segments and len(reader.segments) > 0
