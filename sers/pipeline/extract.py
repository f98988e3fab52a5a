"""Stage 1, `sers extract`: run a pretrained speech model once, store every layer.

    summary = extract("en.csv", "microsoft/wavlm-large", "en.zarr", device="cuda", dtype="bfloat16")

Plan (read audio headers, sort by length, lay out the cache) → batches of at most
``batch_seconds`` of padded audio → hidden states of every layer → pooled statistics
(padding excluded) and frames → cache rows, flushed and marked done as they go.
Rerunning the same call resumes; a finished cache is marked ``complete``.
With ``alignments`` (TextGrids or CTM, see :mod:`sers.pipeline.segments`), the mean of
every layer over each aligned vowel is stored too, from the full-rate hidden states.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import signal
import threading
import time
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

import sers.cache
from sers.inputs.audio import audio_info, load_batch, num_samples_after_resampling
from sers.cache import size_on_disk
from sers.cache.schema import check_pool_stats, storable_text
from sers.errors import SersError, describe_os_error
from sers.display.tables import format_bytes
from sers.inputs.manifest import Utterance, manifest_digest
from sers.pipeline.batch_memory import CPU_BATCH_SECONDS, auto_batch_seconds
from sers.pipeline.segments import SegmentPlan, open_segment_source, plan_segments
from sers.upstream import load_upstream
from sers.workers import worker_pool

# Settings that change the stored numbers: resuming with any of them different is refused.
RESULT_SETTINGS = ("model", "revision", "dtype", "pool_stats", "frame_layers", "frame_stride",
                   "manifest_digest", "shard", "alignments", "model_weights_sha256", "max_seconds")

# Self-attention holds a (frames x frames) matrix per head: for WavLM-large (16 heads, 50 frames/s)
# 120 s of audio needs 16 * 6000^2 * 4 bytes = 2.3 GB per layer, 20 minutes 230 GB. Longer
# utterances are recorded as errors instead of crashing the run (cut them with start/end).
DEFAULT_MAX_SECONDS = 120.0
# A run stops cleanly (every finished row kept) when its disk has less than this left, or twice
# what one batch writes, rather than meet ENOSPC mid-write: libhdf5 leaves a damaged file (or
# crashes) after a failed write, zarr loses only the chunk being written.
DISK_RESERVE_BYTES = 256 * 2**20


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
FAILURES_SHOWN = 10


@dataclass
class ExtractSummary:
    path: Path
    n_utterances: int
    n_failed: int
    audio_hours: float
    seconds: float
    cache_bytes: int
    already_complete: bool = False
    segments: str = ""  # the vowel segment counts, when extracted with alignments
    failures: list = ()  # the first FAILURES_SHOWN errors: {id, path, reason}

    @property
    def real_time_factor(self) -> float:
        return self.seconds / max(self.audio_hours * 3600, 1e-9)

    def summary(self) -> str:
        if self.already_complete:
            return f"{self.path} is already complete ({self.n_utterances} utterances); nothing to do"
        return (f"extracted {self.n_utterances} utterances ({self.n_failed} failed), "
                f"{self.audio_hours:.3f} h of audio in {self.seconds:.1f} s, real-time factor "
                f"{self.real_time_factor:.4f}, cache {format_bytes(self.cache_bytes)} -> {self.path}"
                + (f"\n{self.segments}" if self.segments else "") + self._failure_lines())

    def _failure_lines(self) -> str:
        if not self.n_failed:
            return ""
        lines = [f"  {f['id']}: {f['reason']}" for f in self.failures]
        more = f" (first {len(lines)} below; `sers inspect {self.path}` lists all)" if self.n_failed > len(lines) else ""
        return f"\nfailed utterances{more}:\n" + "\n".join(lines)


@dataclass
class _Planned:
    utterance: Utterance
    n_samples: int      # at the model's rate
    n_frames: int       # model frames covering the audio
    cost_seconds: float  # padded seconds it occupies in a batch


def extract(utterances: list[Utterance], model: str, out, *, revision: str | None = None,
            device: str = "cpu", dtype: str = "float32", batch_seconds: float | str = 200.0,
            frame_layers="none", frame_stride: int = 1, pool_stats=("mean",), shard=None,
            workers: int = 2, strict: bool = False, overwrite: bool = False,
            progress: bool = True, log=print, pooled_chunk_rows: int | None = None,
            alignments=None, alignment_format: str | None = None, phone_tier: str = "phones",
            vowel_map=None, max_seconds: float | None = DEFAULT_MAX_SECONDS,
            whisper_input: str | None = None) -> ExtractSummary:
    """Extract ``utterances`` with ``model`` into the cache ``out`` (see module doc).

    ``pooled_chunk_rows`` sets how many utterances are flushed (and marked done) at a
    time; the default, about 4 MB of pooled features, suits real models.
    ``alignments``: a TextGrid folder or CTM file; its vowels (``vowel_map``: en-arpabet,
    en-ipa, cmn-pinyin, cmn-ipa or a JSON file) become the cache's ``segments/``.
    ``max_seconds``: longer utterances are recorded as errors (None: no limit); models that
    read fixed windows (Whisper) take any length.
    ``whisper_input``: "padded" or "trimmed" 30 s windows (Whisper only, see
    :mod:`sers.upstream.whisper`), stored as the cache attribute ``whisper_input``.
    ``batch_seconds="auto"``: on a GPU, sized to its free memory by one probe batch
    (:mod:`sers.pipeline.batch_memory`); on a CPU, 200.
    """
    started = time.perf_counter()
    out = Path(out)
    shard = resolve_shard(shard)
    digest = manifest_digest(utterances)
    if shard is not None:
        utterances = utterances[shard[0]::shard[1]]
    if frame_stride < 1:
        raise SersError(f"--frame-stride must be >= 1, got {frame_stride}")
    if batch_seconds != "auto" and not (isinstance(batch_seconds, (int, float)) and batch_seconds > 0):
        raise SersError(f"--batch-seconds must be positive or auto, got {batch_seconds!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise SersError(f"--max-seconds must be positive, got {max_seconds}")
    sers.cache.backend_name(out)  # a wrong suffix or pooling statistic fails before the model loads
    check_pool_stats(pool_stats)
    if Path(str(model)).expanduser().exists():  # a local folder: one name wherever it is typed from
        model = str(Path(str(model)).expanduser().resolve())
    if alignments is None and vowel_map is not None:
        raise SersError("--vowel-map needs --alignments (the phone alignments it applies to)")
    segment_source = open_segment_source(alignments, alignment_format, phone_tier, vowel_map) \
        if alignments is not None else None

    transformers.logging.disable_progress_bar()  # our own bar is the one that matters
    upstream = load_upstream(model, revision=revision, device=device, dtype=dtype, whisper_input=whisper_input)
    layers = _resolve_frame_layers(frame_layers, upstream.num_layers)
    identity = model_identity(model, upstream)
    if upstream.max_window_seconds is not None:
        max_seconds = None  # windowed models: memory does not grow with the length
    settings = {"model": model, "revision": revision, "dtype": dtype, "pool_stats": list(pool_stats),
                **identity, "max_seconds": max_seconds, "frame_layers": layers, "frame_stride": frame_stride, "manifest_digest": digest,
                "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
                "batch_seconds": batch_seconds, "device": device, "whisper_input": upstream.whisper_input,
                "alignments": segment_source.settings() if segment_source else None}

    writer = _open_existing(out, settings, overwrite, log)
    if writer is None:
        planned, plan_errors = _plan(utterances, upstream, strict, max_seconds)
        planned.sort(key=lambda p: (p.n_samples, p.utterance.id))
        stored_frames = [math.ceil(p.n_frames / frame_stride) if layers else 0 for p in planned]
        _check_disk(out, upstream, len(planned), sum(stored_frames), len(pool_stats), len(layers), log,
                    audio_bytes=2 * sum(p.n_samples for p in planned))
        columns = _columns(planned, stored_frames, upstream.sample_rate)
        # Alignments are checked before the cache exists: a wrong folder costs seconds.
        segment_plan = _segment_plan(segment_source, columns, upstream)
        writer = sers.cache.CacheWriter.create(
            out, columns, num_layers=upstream.num_layers, hidden_size=upstream.hidden_size,
            pool_stats=pool_stats, frame_layers=layers, overwrite=overwrite,
            pooled_chunk_rows=pooled_chunk_rows,
            model_id=upstream.model_id, model_revision=upstream.revision, model_family=upstream.family,
            **identity, errors=[(utt.id, str(utt.path), reason) for utt, reason in plan_errors],
            sample_rate=upstream.sample_rate, frame_rate=upstream.frame_rate, frame_stride=frame_stride,
            dtype=dtype, settings=settings, manifest_digest=digest, model=upstream.describe(),
            whisper_input=upstream.whisper_input or None,
            segment_layers=list(range(upstream.num_layers)) if segment_plan else None,
            segment_attrs=segment_plan.attrs("hidden states") if segment_plan else None)
    elif writer == "complete":
        with sers.cache.open(out) as cache:
            return ExtractSummary(out, len(cache.utterances), len(cache.errors), 0.0, 0.0,
                                  size_on_disk(out), already_complete=True)
    else:
        try:
            with sers.cache.open(out) as cache:
                segment_plan = _segment_plan(segment_source, cache.all_utterances, upstream)
                unaccounted = _unaccounted(utterances, cache)
            # Rows neither laid out nor recorded as errors (a cache of an older sers): plan them again.
            readable_now, errors = _plan(unaccounted, upstream, strict, max_seconds)
            errors += [(p.utterance, f"{p.utterance.path}: not in the cache's layout (unreadable when it was laid "
                                     "out); rerun with --overwrite to include it") for p in readable_now]
            writer.record_errors((utt.id, str(utt.path), reason) for utt, reason in errors)
        except BaseException:
            writer.close()
            raise

    with writer:
        this_run = writer.pending_rows()
        if batch_seconds == "auto":
            with sers.cache.open(out) as cache:
                longest = int(cache.all_utterances.n_samples.max()) if len(this_run) else 0
            batch_seconds = auto_batch_seconds(upstream, longest, log) if longest else CPU_BATCH_SECONDS
        try:
            _run(writer, upstream, batch_seconds, frame_stride, workers, strict, progress, segment_plan)
        except Exception as exc:
            message = _write_failure(out, exc)
            if message is None:
                raise
            raise SersError(message) from None
        with sers.cache.open(out) as cache:
            table = cache.all_utterances
            n_failed = len(cache.errors)
            failures = cache.errors[:FAILURES_SHOWN]
            missing = _unaccounted(utterances, cache)
            if missing:  # what the run promises: every manifest row ends as a row or an error
                raise SersError(f"{out}: {len(missing)} manifest rows are neither extracted nor recorded as "
                                f"errors (first: {missing[0].id}); rerun the same command")
            hours = float(table.duration[~table.failed].sum()) / 3600
            hours_this_run = float(table.duration[this_run][~table.failed[this_run]].sum()) / 3600
            stored_vowels = Counter(cache.segments.vowel) if segment_plan else None
        seconds = time.perf_counter() - started
        writer.finish(n_failed=n_failed, audio_hours=hours, extract_seconds=seconds)
    n_extracted = len(table) - int(table.failed.sum())
    if n_extracted == 0:
        raise SersError(f"no utterance could be extracted ({n_failed} failed); `sers inspect {out}` lists why")
    # The real-time factor counts the audio of this run only (a resumed run did the rest before).
    return ExtractSummary(out, n_extracted, n_failed, hours_this_run, seconds, size_on_disk(out),
                          segments=segment_plan.summary(stored_vowels) if segment_plan else "",
                          failures=failures)


def _unaccounted(utterances: list[Utterance], cache) -> list[Utterance]:
    """The utterances that are neither rows of ``cache`` nor in its errors."""
    known = set(cache.all_utterances.id) | {error["id"] for error in cache.errors}
    return [utt for utt in utterances if storable_text(utt.id) not in known]


def model_identity(model: str, upstream) -> dict:
    """What the numbers depend on: the sha256 of a local folder's weight files, and the hub commit.

    A folder path alone is no identity: other weights can be copied to the same path, and the
    same weights can be read from anywhere."""
    identity = {"model_weights_sha256": None, "model_commit": upstream.describe().get("resolved_commit")}
    folder = Path(model)
    if folder.is_dir():
        weights = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        if weights:
            digest = hashlib.sha256()
            for path in weights:
                digest.update(path.name.encode() + b"\0")
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(2**22), b""):
                        digest.update(block)
            identity["model_weights_sha256"] = digest.hexdigest()
    return identity


def _segment_plan(segment_source, table, upstream) -> SegmentPlan | None:
    """The vowel segments of every row of ``table`` (extraction columns or a cache's table)."""
    if segment_source is None:
        return None
    rows = list(range(len(table["id"])))
    return plan_segments(segment_source, table, rows, upstream.frame_rate,
                         [upstream.n_frames(int(n)) for n in table["n_samples"]])


def resolve_shard(shard) -> tuple[int, int] | None:
    """'i/N' or (i, N) → (i, N); None → RANK/WORLD_SIZE from the launcher, if set."""
    if shard is None:
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
            shard = (int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"]))
        else:
            return None
    if isinstance(shard, str):
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError:
            raise SersError(f"--shard {shard!r}: expected I/N, e.g. 0/4") from None
        shard = (index, count)
    index, count = shard
    if not 0 <= index < count:
        raise SersError(f"--shard {index}/{count}: I must be in 0..{count - 1}")
    return index, count


def _resolve_frame_layers(frame_layers, num_layers: int) -> list[int]:
    if frame_layers in ("all", None):
        return list(range(num_layers))
    if frame_layers in ("none", (), []):
        return []
    layers = sorted({int(x) for x in frame_layers})
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad:
        raise SersError(f"--frame-layers {bad}: the model has layers 0-{num_layers - 1}")
    return layers


def _open_existing(out: Path, settings: dict, overwrite: bool, log):
    """None: start fresh (with --overwrite the old cache goes only once the new one is laid
    out, under the writer lock). 'complete': nothing to do. A CacheWriter: resume it."""
    if not out.exists() or overwrite:
        return None
    writer = sers.cache.CacheWriter.resume(out)
    stored = writer.settings
    for key in RESULT_SETTINGS:
        if stored.get(key) != settings[key]:
            writer.close()
            hint = "the manifest changed" if key == "manifest_digest" else \
                f"it was made with {key}={stored.get(key)!r}, this run asks for {settings[key]!r}"
            raise SersError(f"{out} was extracted with different settings: {hint}; "
                            "pass --overwrite to start again or choose another --out")
    if writer.whisper_input != settings["whisper_input"]:  # a root attribute; old caches: padded
        writer.close()
        raise SersError(f"{out} was extracted with --whisper-input {writer.whisper_input}, this run asks "
                        f"for {settings['whisper_input']}; pass --whisper-input {writer.whisper_input} to go on, "
                        f"--overwrite to start again, or another --out")
    if writer.complete:
        writer.close()
        return "complete"
    log(f"resuming {out}: {len(writer.pending_rows())} of {writer.n_rows} utterances left")
    return writer


def _plan(utterances, upstream, strict: bool, max_seconds: float | None = None):
    """Read every header (no decoding): lengths decide the batches and the frame layout."""
    planned, errors = [], []
    for utt in utterances:
        try:
            if storable_text(utt.path) != utt.path:
                raise SersError(f"{storable_text(utt.path)}: the file name is not valid UTF-8; rename the file")
            native_samples, native_rate, seconds = audio_info(utt.path, utt.start, utt.end)
            n_samples = num_samples_after_resampling(native_samples, native_rate, upstream.sample_rate)
            if n_samples < upstream.min_samples:
                raise SersError(f"{utt.path}: audio too short ({n_samples} samples at "
                                f"{upstream.sample_rate} Hz; the model needs at least {upstream.min_samples})")
            if max_seconds is not None and seconds > max_seconds:
                raise SersError(f"{utt.path}: {seconds:.1f} s of audio is longer than --max-seconds "
                                f"{max_seconds:g} (self-attention memory grows with the square of the length); "
                                "cut it into segments with start/end columns, or raise --max-seconds")
        except SersError as exc:
            if strict:
                raise SersError(f"utterance {utt.id}: {exc} (--strict stops at the first failure)") from None
            errors.append((utt, str(exc)))
            continue
        planned.append(_Planned(utt, n_samples, upstream.n_frames(n_samples),
                                upstream.processed_seconds(n_samples)))
    return planned, errors


def _columns(planned: list[_Planned], stored_frames: list[int], sample_rate: int) -> dict:
    def column(name):
        return [getattr(p.utterance, name) for p in planned]

    return {
        "id": column("id"), "path": [str(p) for p in column("path")], "label": column("label"),
        "split": column("split"), "speaker": column("speaker"), "language": column("language"),
        "start": [np.nan if v is None else v for v in column("start")],
        "end": [np.nan if v is None else v for v in column("end")],
        "duration": [p.n_samples / sample_rate for p in planned],
        "n_samples": [p.n_samples for p in planned], "n_frames": stored_frames,
    }


def _check_disk(out: Path, upstream, n_rows, total_frames, n_stats, n_frame_layers, log, audio_bytes=0) -> None:
    pooled = upstream.num_layers * n_rows * upstream.hidden_size * 4 * n_stats
    frames = total_frames * upstream.hidden_size * 2 * n_frame_layers
    # Frames of every layer of a large model are ~80x the 16-bit audio: say so before writing them.
    ratio = frames / audio_bytes if audio_bytes else 0
    ratio = f", {ratio:.{0 if ratio >= 10 else 1}f}x the size of the 16-bit audio" if frames and ratio else ""
    log(f"estimated cache size: {format_bytes(pooled + frames)} before compression "
        f"(pooled {format_bytes(pooled)}, frames {format_bytes(frames)} for {n_frame_layers} layers{ratio})")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if pooled + frames > free:
        raise SersError(f"the cache needs about {format_bytes(pooled + frames)} but {parent} has "
                        f"{format_bytes(free)} free; store fewer frames (--frame-layers 0,6,12, "
                        "--frame-stride 2) or choose another --out")


def _batches(cost_seconds, batch_seconds: float) -> list[list[int]]:
    """Rows in order, cut whenever the padded batch would exceed batch_seconds.

    Batches are formed over all rows, not only the pending ones, so that a resumed run
    feeds the model exactly the batches an uninterrupted run would (bitwise-equal results).
    """
    batches, current, longest = [], [], 0.0
    for row, cost in enumerate(cost_seconds):
        if current and max(longest, cost) * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current, longest = [], 0.0
        current.append(row)
        longest = max(longest, cost)
    if current:
        batches.append(current)
    return batches


def _run(writer, upstream, batch_seconds, frame_stride, workers, strict, progress, segment_plan=None) -> None:
    from tqdm.auto import tqdm

    with sers.cache.open(writer.path) as cache:
        table = cache.all_utterances
    durations = table.duration
    costs = [upstream.processed_seconds(int(n)) for n in table.n_samples]
    pending = set(writer.pending_rows().tolist())
    todo = [b for b in _batches(costs, batch_seconds) if pending.intersection(b)]
    progress_line = _Progress(float(sum(durations[r] for r in pending)), len(pending))
    # The bar runs over milliseconds of audio (what compute scales with); the text is ours (_Progress).
    bar = tqdm(total=round(progress_line.total_seconds * 1000), disable=not progress, dynamic_ncols=True,
               bar_format="extract {percentage:3.0f}%|{bar}| {desc}", desc=progress_line.text())
    pool = worker_pool(workers) if workers > 0 else None
    stop = _StopRequests()
    try:
        def submit(batch):
            args = (table.path[batch], table.start[batch], table.end[batch], table.n_samples[batch],
                    upstream.sample_rate)
            return pool.submit(load_batch, *args) if pool else load_batch(*args)

        # Decode a few batches ahead in worker processes while the model runs.
        prefetch = 2 * max(workers, 1)
        ahead = deque(submit(b) for b in todo[:prefetch])
        reserve = _disk_reserve(writer, upstream, batch_seconds, frame_stride)
        for i, batch in enumerate(todo):
            _check_space_left(writer.path, reserve)
            loaded = ahead.popleft()
            try:
                waves = loaded.result() if pool else loaded
            except BrokenProcessPool:
                raise SersError(f"{writer.path}: an audio decoding worker died (killed, or out of memory); every "
                                "finished utterance is kept: rerun the same command to resume "
                                "(--workers 0 decodes in the main process)") from None
            if i + prefetch < len(todo):
                ahead.append(submit(todo[i + prefetch]))
            _extract_batch(writer, upstream, batch, waves, pending, table, frame_stride, strict, segment_plan)
            done = [r for r in batch if r in pending]
            progress_line.add(len(done), float(sum(durations[r] for r in done)))
            bar.set_description_str(progress_line.text(), refresh=False)
            bar.update(round(progress_line.seconds * 1000) - bar.n)  # absolute: float sums do not drift
            if stop.requested:
                raise KeyboardInterrupt(stop.requested)
    except BaseException:
        try:
            writer.flush()  # whatever finished is kept, on Ctrl-C, SIGTERM (SLURM time limits) and errors
        except Exception:  # noqa: BLE001 - the first error is the one to report; unflushed rows are redone
            pass
        raise
    else:
        writer.flush()
    finally:
        stop.restore()
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def _write_failure(out: Path, exc: Exception) -> str | None:
    """One line for a failed write (what happened, what is kept, how to go on); None for other errors."""
    if not out.exists():  # zarr then fails with KeyError, HDF5 writes on into the unlinked file
        return (f"{out} was deleted or moved while being written; nothing in it can be resumed: rerun the same "
                "command to start again")
    code = getattr(exc, "errno", None)
    # h5py reports libhdf5's failures as OSError without errno, or RuntimeError naming the failed write.
    hdf5_failure = (isinstance(exc, OSError) and code is None) or (
        isinstance(exc, RuntimeError) and "write failed" in str(exc))
    if not sers.cache.survives_failed_write(out) and (code in (errno.ENOSPC, errno.EDQUOT) or hdf5_failure):
        # libhdf5 leaves its file inconsistent after a failed write; a zarr store loses only the chunk.
        what = describe_os_error(exc) if code else " ".join(str(exc).split())
        return (f"{out}: {what}; an HDF5 file does not survive a failed write: free space and start again with "
                "--overwrite (a .zarr store keeps every finished utterance through a full disk)")
    if not isinstance(exc, OSError) or code is None:
        return None
    return (f"{out}: {describe_os_error(exc)}; every finished utterance is kept: fix that and rerun the same "
            "command to resume")


def _disk_reserve(writer, upstream, batch_seconds: float, frame_stride: int) -> int:
    """Bytes to keep free: twice what one batch can write (its frames and pooled rows), at least
    DISK_RESERVE_BYTES, so that no write meets a full disk."""
    frames = batch_seconds * upstream.frame_rate / frame_stride * len(writer.frame_layers) * writer.hidden_size * 2
    pooled = writer.chunk_rows * writer.num_layers * writer.hidden_size * 4 * len(writer.pool_stats)
    return int(max(DISK_RESERVE_BYTES, 2 * (frames + pooled))) if DISK_RESERVE_BYTES else 0


def _check_space_left(path: Path, reserve: int) -> None:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "vanished", str(path))
    free = shutil.disk_usage(path.resolve().parent).free
    if free < reserve:
        raise SersError(f"{path}: the disk is almost full ({format_bytes(free)} left, a batch needs up to "
                        f"{format_bytes(reserve)}); stopped before it fills up, every finished utterance is kept: "
                        "free space and rerun the same command to resume")


class _Progress:
    """The progress text: utterances, hours of audio, speed and time left, all rounded.

    The speed and the time left count audio, not utterances: rows run shortest first, so a
    count-based estimate would promise the long tail far too soon.
    """

    def __init__(self, total_seconds: float, total_utterances: int):
        self.total_seconds, self.total_utterances = total_seconds, total_utterances
        self.seconds = 0.0
        self.utterances = 0
        self.started = time.perf_counter()

    def add(self, utterances: int, seconds: float) -> None:
        self.utterances += utterances
        self.seconds += seconds

    def text(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        speed = self.seconds / elapsed  # seconds of audio per second
        left = max(self.total_seconds - self.seconds, 0.0) / speed if speed > 0 else None
        return (f"{self.utterances}/{self.total_utterances} utterances, {self.seconds / 3600:.2f}/"
                f"{self.total_seconds / 3600:.2f} h audio, {speed:.3g}x real time "
                f"({speed / 3600:.3g} audio-h/s), ETA {format_duration(left)}")


def format_duration(seconds: float | None) -> str:
    """1 h 02 min, 4 min 12 s, 37 s ('?' when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class _StopRequests:
    """Ctrl-C and SIGTERM (what SLURM time limits and pre-emption send) end the run after the
    current batch, so that every finished row is flushed; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _extract_batch(writer, upstream, batch, waves, pending, table, frame_stride, strict,
                   segment_plan=None) -> None:
    waves = [_checked(upstream, wave) for wave in waves]
    good = [(row, wave) for row, wave in zip(batch, waves) if not isinstance(wave, str)]
    for row, wave in zip(batch, waves):
        if isinstance(wave, str) and row in pending:
            if strict:
                raise SersError(f"utterance {table.id[row]}: {wave} (--strict stops at the first failure)")
            writer.add_failure(row, table.id[row], table.path[row], wave)
    if not good:
        return
    try:
        hidden = upstream.hidden_states([wave for _, wave in good])
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        if len(good) > 1:  # one at a time: only an utterance too long for memory on its own fails
            for row, wave in good:
                _extract_batch(writer, upstream, [row], [wave], pending, table, frame_stride, strict, segment_plan)
            return
        row = good[0][0]
        reason = (f"{table.path[row]}: out of memory running the model on {table.duration[row]:.1f} s of audio; "
                  "cut it into segments with start/end columns, or lower --max-seconds")
        if strict:
            raise SersError(f"utterance {table.id[row]}: {reason} (--strict stops at the first failure)") from None
        if row in pending:
            writer.add_failure(row, table.id[row], table.path[row], reason)
        return
    for (row, _), states in zip(good, hidden):
        if row not in pending:
            continue
        pooled, frames = pool_hidden_states(states, writer.pool_stats, writer.frame_layers, frame_stride)
        # Segments always average full-rate frames, whatever --frame-stride stores.
        segments = segment_plan.features(row, states) if segment_plan else None
        writer.add(row, pooled, frames, segments=segments)


def _out_of_memory(exc: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (OutOfMemoryError on CUDA)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text \
        or "cannot allocate" in text


def _checked(upstream, wave):
    """The waveform, or the reason the model cannot take it (one bad file must not sink a batch)."""
    if isinstance(wave, str):
        return wave
    try:
        return upstream.check_audio(wave)
    except SersError as exc:
        return str(exc)


def pool_hidden_states(states: torch.Tensor, pool_stats, frame_layers, frame_stride: int):
    """(L, T, D) hidden states of one utterance (no padding) → pooled (L, D) per stat, frames per layer."""
    states64 = states.double()
    pooled = {}
    if "mean" in pool_stats:
        pooled["mean"] = states64.mean(dim=1).float().numpy()
    if "std" in pool_stats:
        pooled["std"] = states64.std(dim=1, unbiased=False).float().numpy()
    frames = {}
    for layer in frame_layers:
        frames[layer] = stride_mean(states[layer], frame_stride).numpy()
    return pooled, frames


def stride_mean(frames: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean over consecutive groups of ``stride`` frames; the last group may be shorter."""
    if stride == 1:
        return frames.float()
    n, dim = frames.shape
    groups = math.ceil(n / stride)
    padded = torch.zeros(groups * stride, dim, dtype=torch.float64)
    padded[:n] = frames.double()
    counts = torch.full((groups,), float(stride), dtype=torch.float64)
    counts[-1] = n - (groups - 1) * stride
    return (padded.view(groups, stride, dim).sum(1) / counts[:, None]).float()
