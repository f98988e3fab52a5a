"""`sers extract` end to end on tiny models built from configs and generated audio."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from click.testing import CliRunner

import sers.cache
from sers.cli import main
from sers.errors import SersError
from sers.inputs.manifest import read_manifest
from sers.pipeline.extract import extract, resolve_shard
from sers.pipeline.extract_run import stride_mean
from sers.upstream import load_upstream
from tiny_models import tiny_model  # noqa: F401  (pytest fixture)

LENGTHS = [0.61, 1.0, 1.37, 0.5, 2.2, 0.83, 1.9, 0.72]


def _corpus(folder: Path, lengths=LENGTHS, extra_rows=()) -> Path:
    """WAV files of noisy tones, one per length, and a manifest naming them."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,split,speaker,language"]
    for i, seconds in enumerate(lengths):
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.normal(size=t.size)
        sf.write(folder / f"u{i}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i}.wav,{'NHAS'[i % 4]},{'train' if i < 6 else 'dev'},s{i % 3},en")
    rows += list(extra_rows)
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _run(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def test_pooled_and_frames_equal_a_hand_computation(tmp_path, tiny_model):
    model_dir = tiny_model("wavlm")
    manifest = _corpus(tmp_path / "audio")
    out = tmp_path / "c.zarr"
    result = _run(["extract", "--model", str(model_dir), "--manifest", str(manifest), "--out", str(out),
                   "--pool", "mean,std", "--frame-layers", "0,2", "--frame-stride", "2", "--batch-seconds", "4",
                   "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "estimated cache size" in result.output
    assert "extracted 8 utterances (0 failed)" in result.output and "real-time factor" in result.output

    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    cache = sers.cache.open(out).require_complete()
    assert cache.num_layers == 3 and cache.hidden_size == 32 and cache.frame_layers == [0, 2]
    for i, uid in enumerate(["u1", "u4", "u3"]):
        wave, _ = sf.read(tmp_path / "audio" / f"{uid}.wav", dtype="float32")
        with torch.inference_mode():
            states = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
        states = torch.stack(states)[:, 0]  # (L, T, D), single unpadded input
        row = list(cache.utterances.id).index(uid)
        np.testing.assert_allclose(cache.pooled_layers(range(3), rows=[row])[:, 0], states.mean(1), atol=1e-4)
        np.testing.assert_allclose(cache.pooled_layers(range(3), stat="std", rows=[row])[:, 0],
                                   states.std(1, unbiased=False), atol=1e-4)
        frames = cache.frames(uid, 2)
        assert frames.shape == ((states.shape[1] + 1) // 2, 32)
        np.testing.assert_allclose(frames, stride_mean(states[2], 2), atol=2e-3)  # float16 storage
    assert set(cache.utterances.split) == {"train", "dev"}


def test_stride_mean_keeps_a_short_last_group():
    frames = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    np.testing.assert_allclose(stride_mean(frames, 2), [[1, 2], [5, 6], [8, 9]])


def test_zarr_and_hdf5_give_equal_arrays(tmp_path, tiny_model):
    model_dir = tiny_model("wav2vec2")
    manifest = _corpus(tmp_path / "audio")
    utterances = read_manifest(manifest)
    for suffix in (".zarr", ".h5"):
        extract(utterances, str(model_dir), tmp_path / f"c{suffix}", frame_layers=[1], workers=0, progress=False,
                log=lambda *_: None)
    a, b = sers.cache.open(tmp_path / "c.zarr"), sers.cache.open(tmp_path / "c.h5")
    np.testing.assert_array_equal(a.pooled_layers(range(3)), b.pooled_layers(range(3)))
    np.testing.assert_array_equal(a.utterances.id, b.utterances.id)
    np.testing.assert_array_equal(a.frames("u5", 1), b.frames("u5", 1))


def test_bad_audio_lands_in_errors_and_strict_stops(tmp_path, tiny_model):
    model_dir = tiny_model("hubert")
    folder = tmp_path / "audio"
    manifest = _corpus(folder, lengths=[1.0, 1.2], extra_rows=[
        "corrupt.wav,N,train,s0,en", "missing.wav,H,train,s0,en", "short.wav,A,train,s0,en"])
    (folder / "corrupt.wav").write_bytes(b"RIFF not really a wave file" * 20)
    sf.write(folder / "short.wav", np.zeros(200, np.float32), 16000)
    out = tmp_path / "c.zarr"
    result = _run(["extract", "--model", str(model_dir), "--manifest", str(manifest), "--out", str(out),
                   "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "extracted 2 utterances (3 failed)" in result.output
    cache = sers.cache.open(out)
    assert cache.complete and sorted(cache.utterances.id) == ["u0", "u1"]
    reasons = {e["id"]: e["reason"] for e in cache.errors}
    assert set(reasons) == {"corrupt", "missing", "short"}
    assert "too short" in reasons["short"] and "200 samples" in reasons["short"]
    assert "missing.wav" in reasons["missing"]

    result = _run(["extract", "--model", str(model_dir), "--manifest", str(manifest), "--out",
                   str(tmp_path / "s.zarr"), "--workers", "0", "--quiet", "--strict"])
    assert result.exit_code == 1
    assert result.output.startswith("error: utterance ") and "--strict" in result.output


def test_rerun_is_a_no_op_and_different_settings_are_refused(tmp_path, tiny_model):
    model_dir = tiny_model("wavlm")
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 1.5])
    args = ["extract", "--model", str(model_dir), "--manifest", str(manifest), "--out",
            str(tmp_path / "c.zarr"), "--workers", "0", "--quiet"]
    assert _run(args).exit_code == 0
    again = _run(args)
    assert again.exit_code == 0 and "already complete" in again.output
    changed = _run(args + ["--frame-stride", "2"])
    assert changed.exit_code == 1
    assert "frame_stride=1, this run asks for 2" in changed.output and "--overwrite" in changed.output
    assert _run(args + ["--frame-stride", "2", "--overwrite"]).exit_code == 0
    assert sers.cache.open(tmp_path / "c.zarr").attrs["frame_stride"] == 2


_KILL_AFTER_TWO_BATCHES = """
import os, signal, sys
import torch
torch.set_num_threads(1)  # as the test process (conftest): bitwise equality needs the same threads
sys.path.insert(0, {tests!r})
import sers.pipeline.extract as ex
import sers.pipeline.extract_run as run
from sers.inputs.manifest import read_manifest
real = run._extract_batch
calls = []
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
run._extract_batch = dying
ex.extract(read_manifest({manifest!r}), {model!r}, {out!r}, batch_seconds=2.5, frame_layers=[1],
           workers=1, progress=False, pooled_chunk_rows=2)
"""


def test_resume_after_a_killed_process_equals_an_uninterrupted_run(tmp_path, tiny_model):
    model_dir = str(tiny_model("wav2vec2-layer"))
    manifest = str(_corpus(tmp_path / "audio"))
    killed = tmp_path / "killed.zarr"
    script = _KILL_AFTER_TWO_BATCHES.format(tests=str(Path(__file__).parent), manifest=manifest,
                                            model=model_dir, out=str(killed))
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    partial = sers.cache.open(killed)
    assert not partial.complete and 0 < len(partial.utterances) < 8
    with pytest.raises(SersError, match="not finished"):
        partial.require_complete()

    log = []
    extract(read_manifest(manifest), model_dir, killed, batch_seconds=2.5, frame_layers=[1], workers=0,
            progress=False, log=log.append, pooled_chunk_rows=2)
    assert any(line.startswith("resuming") for line in log)
    extract(read_manifest(manifest), model_dir, tmp_path / "whole.zarr", batch_seconds=2.5, frame_layers=[1],
            workers=0, progress=False, log=log.append, pooled_chunk_rows=2)
    resumed, whole = sers.cache.open(killed), sers.cache.open(tmp_path / "whole.zarr")
    assert resumed.complete
    np.testing.assert_array_equal(resumed.utterances.id, whole.utterances.id)
    np.testing.assert_array_equal(resumed.pooled_layers(range(3)), whole.pooled_layers(range(3)))
    for uid in whole.utterances.id:
        np.testing.assert_array_equal(resumed.frames(uid, 1), whole.frames(uid, 1))


def test_sigterm_keeps_every_finished_batch(tmp_path, tiny_model):
    """SLURM time limits send SIGTERM: the run stops after the batch and flushes what it finished."""
    model_dir = str(tiny_model("wav2vec2-layer"))
    manifest = str(_corpus(tmp_path / "audio"))
    script = _KILL_AFTER_TWO_BATCHES.replace("signal.SIGKILL", "signal.SIGTERM").replace(
        ", pooled_chunk_rows=2", "").format(tests=str(Path(__file__).parent), manifest=manifest, model=model_dir,
                                            out=str(tmp_path / "t.zarr"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "KeyboardInterrupt: SIGTERM" in result.stderr
    partial = sers.cache.open(tmp_path / "t.zarr")
    assert not partial.complete and 3 <= len(partial.utterances) < 8  # three batches flushed, not one chunk
    extract(read_manifest(manifest), model_dir, tmp_path / "t.zarr", batch_seconds=2.5, frame_layers=[1],
            workers=0, progress=False, log=lambda *_: None)
    assert sers.cache.open(tmp_path / "t.zarr").complete


def test_two_shards_merged_equal_a_single_run(tmp_path, tiny_model, monkeypatch):
    model_dir = str(tiny_model("wavlm"))
    manifest = _corpus(tmp_path / "audio")
    base = ["extract", "--model", model_dir, "--manifest", str(manifest), "--workers", "0", "--quiet",
            "--frame-layers", "2"]
    assert _run(base + ["--out", str(tmp_path / "whole.zarr")]).exit_code == 0
    assert _run(base + ["--out", str(tmp_path / "s0.zarr"), "--shard", "0/2"]).exit_code == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # as torchrun / SLURM launchers set it
    assert _run(base + ["--out", str(tmp_path / "s1.h5")]).exit_code == 0
    monkeypatch.delenv("WORLD_SIZE")
    merged_out = tmp_path / "merged.zarr"
    result = _run(["cache", "merge", str(tmp_path / "s0.zarr"), str(tmp_path / "s1.h5"), "-o", str(merged_out)])
    assert result.exit_code == 0 and "merged 2 shards: 8 utterances" in result.output
    whole, merged = sers.cache.open(tmp_path / "whole.zarr"), sers.cache.open(merged_out)
    order = [list(merged.utterances.id).index(uid) for uid in whole.utterances.id]
    # The shards batch different utterances together; masked batching is exact to float tolerance.
    np.testing.assert_allclose(merged.pooled_layers(range(3))[:, order], whole.pooled_layers(range(3)), atol=1e-5)
    for uid in whole.utterances.id:
        np.testing.assert_allclose(merged.frames(uid, 2), whole.frames(uid, 2), atol=2e-3)
    incomplete = _run(["cache", "merge", str(tmp_path / "s0.zarr"), "-o", str(tmp_path / "m2.zarr")])
    assert incomplete.exit_code == 1 and "shard(s) [1] of 2 are missing" in incomplete.output


def test_whisper_keeps_only_frames_covering_audio(tmp_path, tiny_model):
    model_dir = str(tiny_model("whisper"))
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 3.3])
    out = tmp_path / "w.zarr"
    assert _run(["extract", "--model", model_dir, "--manifest", str(manifest), "--out", str(out),
                 "--workers", "0", "--quiet", "--frame-layers", "all"]).exit_code == 0
    cache = sers.cache.open(out)
    frames = dict(zip(cache.utterances.id, cache.utterances.n_frames))
    assert frames == {"u0": 50, "u1": 165}
    assert cache.attrs["model_family"] == "whisper" and cache.frames("u1", 2).shape == (165, 32)


def test_whisper_trimmed_is_stored_resumed_and_never_mixed(tmp_path, tiny_model):
    model_dir = str(tiny_model("whisper"))
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 3.3, 0.7, 2.0])
    base = ["extract", "--model", model_dir, "--manifest", str(manifest), "--workers", "0", "--quiet",
            "--frame-layers", "2"]
    trimmed, padded = base + ["--whisper-input", "trimmed"], base + ["--whisper-input", "padded"]
    assert _run(trimmed + ["-o", str(tmp_path / "t.zarr")]).exit_code == 0
    assert _run(padded + ["-o", str(tmp_path / "p.zarr")]).exit_code == 0
    assert _run(base + ["-o", str(tmp_path / "d.zarr")]).exit_code == 0  # the default
    assert sers.cache.open(tmp_path / "d.zarr").attrs["whisper_input"] == "trimmed"
    t, p = sers.cache.open(tmp_path / "t.zarr"), sers.cache.open(tmp_path / "p.zarr")
    assert t.attrs["whisper_input"] == "trimmed" and t.attrs["model"]["whisper_input"] == "trimmed"
    assert p.attrs["whisper_input"] == "padded"
    assert list(t.utterances.n_frames) == list(p.utterances.n_frames)
    # The stored features are the wrapper's, one utterance at a time.
    upstream = load_upstream(model_dir, whisper_input="trimmed")
    for i, uid in enumerate(t.utterances.id):
        (states,) = upstream.hidden_states([sf.read(tmp_path / "audio" / f"{uid}.wav", dtype="float32")[0]])
        np.testing.assert_allclose(t.pooled_layers(range(3), rows=[i])[:, 0], states.mean(1).numpy(), atol=1e-4)
    with pytest.raises(SersError, match="different Whisper inputs"):
        t.check_compatible(p)
    # Resuming or re-running with the other input is refused, not silently mixed.
    again = _run(padded + ["-o", str(tmp_path / "t.zarr")])
    assert again.exit_code == 1 and "extracted with --whisper-input trimmed, this run asks for padded" in again.output
    # Shards of different inputs do not merge.
    assert _run(trimmed + ["-o", str(tmp_path / "s0.zarr"), "--shard", "0/2"]).exit_code == 0
    assert _run(padded + ["-o", str(tmp_path / "s1.zarr"), "--shard", "1/2"]).exit_code == 0
    merged = _run(["cache", "merge", str(tmp_path / "s0.zarr"), str(tmp_path / "s1.zarr"), "-o", str(tmp_path / "m.zarr")])
    assert merged.exit_code == 1 and "extracted with --whisper-input padded there and trimmed here" in merged.output
    wavlm = _run(["extract", "--model", str(tiny_model("wavlm")), "--manifest", str(manifest), "--workers", "0",
                  "--quiet", "-o", str(tmp_path / "w.zarr"), "--whisper-input", "trimmed"])
    assert wavlm.exit_code == 1 and "applies to Whisper models" in wavlm.output


def test_frames_are_opt_in_and_their_size_is_said_first(tmp_path, tiny_model):
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 2.0])
    base = ["extract", "--model", str(tiny_model("wavlm")), "--manifest", str(manifest), "--workers", "0", "--quiet"]
    default = _run(base + ["-o", str(tmp_path / "d.zarr")])
    assert default.exit_code == 0 and "frames 0 B for 0 layers)" in default.output
    assert sers.cache.open(tmp_path / "d.zarr").frame_layers == []
    every = _run(base + ["-o", str(tmp_path / "a.zarr"), "--frame-layers", "all"])
    # 3 layers x 32 dims x 50 frames/s x 2 bytes against 16 000 samples/s x 2 bytes: 0.3x.
    assert every.exit_code == 0 and "frames 28.4 kB for 3 layers, 0.3x the size of the 16-bit audio)" in every.output


def test_msp_podcast_layout_through_the_cli(tmp_path, tiny_model):
    root = tmp_path / "MSP-Podcast"
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    for i, (emotion, split) in enumerate([("N", "Train"), ("H", "Train"), ("C", "Train"), ("S", "Development")]):
        sf.write(root / "Audios" / f"MSP-PODCAST_0001_{i:04d}.wav", 0.1 * np.ones(16000, np.float32), 16000)
        lines.append(f"MSP-PODCAST_0001_{i:04d}.wav,{emotion},3,4,4,{i},Female,{split}")
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n")
    result = _run(["extract", "--model", str(tiny_model("wavlm")), "--format", "msp-podcast", "--manifest",
                   str(root), "--out", str(tmp_path / "msp.h5"), "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 utterances" in result.output
    cache = sers.cache.open(tmp_path / "msp.h5")
    assert sorted(cache.utterances.label) == ["H", "N", "S"] and set(cache.utterances.language) == {"en"}


def test_not_enough_disk_is_refused_before_any_work(tmp_path, tiny_model, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    manifest = _corpus(tmp_path / "audio", lengths=[1.0])
    result = _run(["extract", "--model", str(tiny_model("wavlm")), "--manifest", str(manifest), "--out",
                   str(tmp_path / "c.zarr"), "--workers", "0", "--quiet", "--frame-layers", "all"])
    assert result.exit_code == 1 and "has 1.0 kB free" in result.output and "--frame-layers" in result.output
    assert not (tmp_path / "c.zarr").exists()


def test_shard_argument_checks():
    assert resolve_shard("1/4") == (1, 4)
    with pytest.raises(SersError, match="expected I/N"):
        resolve_shard("one of four")
    with pytest.raises(SersError, match="I must be in 0..3"):
        resolve_shard("4/4")


def test_a_run_where_nothing_can_be_extracted_fails(tmp_path, tiny_model):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "m.csv").write_text("path,label\nnot_audio/,N\n")
    (folder / "not_audio").mkdir()
    result = _run(["extract", "--model", str(tiny_model("wavlm")), "--manifest", str(folder / "m.csv"), "-o",
                   str(tmp_path / "c.zarr"), "--workers", "0", "--quiet"])
    assert result.exit_code == 1 and "no utterance could be extracted (1 failed)" in result.output


def test_one_model_folder_typed_two_ways_is_one_model(tmp_path, tiny_model, monkeypatch):
    model_dir = tiny_model("wavlm")
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 1.2])
    monkeypatch.chdir(model_dir.parent)
    base = ["--manifest", str(manifest), "--workers", "0", "--quiet"]
    assert _run(["extract", "--model", model_dir.name, "-o", str(tmp_path / "a.zarr"), *base]).exit_code == 0
    assert _run(["extract", "--model", str(model_dir) + "/", "-o", str(tmp_path / "b.zarr"), *base]).exit_code == 0
    a, b = sers.cache.open(tmp_path / "a.zarr"), sers.cache.open(tmp_path / "b.zarr")
    assert a.model_id == str(model_dir.resolve())
    a.check_compatible(b)


def test_merge_refuses_shards_of_another_precision(tmp_path, tiny_model):
    model_dir = str(tiny_model("wavlm"))
    manifest = _corpus(tmp_path / "audio", lengths=[1.0, 1.2, 1.4, 1.6])
    base = ["extract", "--model", model_dir, "--manifest", str(manifest), "--workers", "0", "--quiet"]
    assert _run(base + ["-o", str(tmp_path / "s0.zarr"), "--shard", "0/2"]).exit_code == 0
    assert _run(base + ["-o", str(tmp_path / "s1.zarr"), "--shard", "1/2", "--dtype", "bfloat16"]).exit_code == 0
    result = _run(["cache", "merge", str(tmp_path / "s0.zarr"), str(tmp_path / "s1.zarr"), "-o", str(tmp_path / "m.zarr")])
    assert result.exit_code == 1 and "dtype is 'bfloat16' there and 'float32' here" in result.output


def test_progress_text_is_rounded_and_never_negative(monkeypatch):
    import sers.pipeline.extract_run as ex

    clock = iter([100.0, 160.0, 400.0])
    monkeypatch.setattr(ex.time, "perf_counter", lambda: next(clock))
    progress = ex._Progress(total_seconds=1379.95, total_utterances=512)
    progress.add(3, 11.318249999999999)
    assert progress.text() == ("3/512 utterances, 0.00/0.38 h audio, 0.189x real time (5.24e-05 audio-h/s), "
                               "ETA 2 h 00 min")
    progress.add(509, 1368.6317500001)  # float sums in another order may pass the total a hair
    assert progress.text() == "512/512 utterances, 0.38/0.38 h audio, 4.6x real time (0.00128 audio-h/s), ETA 0 s"
    assert [ex.format_duration(s) for s in (None, -3, 37.4, 252, 3720)] == ["?", "0 s", "37 s", "4 min 12 s",
                                                                            "1 h 02 min"]


def test_batch_seconds_auto_is_the_cpu_default_here_and_sized_by_memory_on_a_gpu(tmp_path, tiny_model):
    from sers.pipeline.batch_memory import CPU_BATCH_SECONDS, MAX_BATCH_SECONDS, batch_seconds_for_memory

    # 1 GiB for a 30 s probe, 100 GiB free, 70% of it used: 70 probes' worth.
    assert batch_seconds_for_memory(100 * 2**30, 2**30, 30.0, fraction=0.7) == pytest.approx(2100.0)
    assert batch_seconds_for_memory(2**20, 2**30, 30.0) == 30.0  # never below the probe that ran
    assert batch_seconds_for_memory(2**50, 2**20, 30.0) == MAX_BATCH_SECONDS
    model_dir = str(tiny_model("wavlm"))
    manifest = _corpus(tmp_path / "audio")
    base = ["extract", "--model", model_dir, "--manifest", str(manifest), "--workers", "0", "--quiet"]
    assert _run(base + ["--out", str(tmp_path / "auto.zarr"), "--batch-seconds", "auto"]).exit_code == 0
    assert _run(base + ["--out", str(tmp_path / "fixed.zarr"), "--batch-seconds", str(CPU_BATCH_SECONDS)]).exit_code == 0
    auto, fixed = sers.cache.open(tmp_path / "auto.zarr"), sers.cache.open(tmp_path / "fixed.zarr")
    assert auto.settings["batch_seconds"] == "auto"
    np.testing.assert_array_equal(auto.pooled_layers(range(3)), fixed.pooled_layers(range(3)))
    bad = _run(base + ["--out", str(tmp_path / "bad.zarr"), "--batch-seconds", "0"])
    assert bad.exit_code == 2 and "'0': give a positive number of seconds or auto" in bad.output
