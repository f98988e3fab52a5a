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

import hashlib
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import transformers

import sers.cache
from sers.inputs.audio import audio_info, num_samples_after_resampling
from sers.cache import size_on_disk
from sers.cache.schema import check_pool_stats, storable_text
from sers.errors import SersError, describe_os_error
from sers.display.tables import format_bytes
from sers.inputs.manifest import Utterance, manifest_digest
from sers.pipeline.batch_memory import CPU_BATCH_SECONDS, auto_batch_seconds
from sers.pipeline.segments import SegmentPlan, open_segment_source, plan_segments
from sers.pipeline.extract_run import run_batches
from sers.upstream import load_upstream

# Settings that change the stored numbers: resuming with any of them different is refused.
RESULT_SETTINGS = ("model", "revision", "dtype", "pool_stats", "frame_layers", "frame_stride",
                   "manifest_digest", "shard", "alignments", "model_weights_sha256", "max_seconds")

# Self-attention holds a (frames x frames) matrix per head: for WavLM-large (16 heads, 50 frames/s)
# 120 s of audio needs 16 * 6000^2 * 4 bytes = 2.3 GB per layer, 20 minutes 230 GB. Longer
# utterances are recorded as errors instead of crashing the run (cut them with start/end).
DEFAULT_MAX_SECONDS = 120.0


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
            whisper_input: str | None = None, space_check: bool = True) -> ExtractSummary:
    """Extract ``utterances`` with ``model`` into the cache ``out`` (see module doc).

    ``pooled_chunk_rows`` sets how many utterances are flushed (and marked done) at a
    time; the default, about 4 MB of pooled features, suits real models.
    ``alignments``: a TextGrid folder or CTM file; its vowels (``vowel_map``: en-arpabet,
    en-ipa, cmn-pinyin, cmn-ipa or a JSON file) become the cache's ``segments/``.
    ``max_seconds``: longer utterances are recorded as errors (None: no limit); models that
    read fixed windows (Whisper) take any length.
    ``whisper_input``: "padded" or "trimmed" 30 s windows (Whisper only, see
    :mod:`sers.upstream.whisper`), stored as the cache attribute ``whisper_input``.
    ``space_check=False``: go on where the free space looks too small for the cache or for a batch
    (the estimates are upper bounds, before compression).
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
                    audio_bytes=2 * sum(p.n_samples for p in planned), space_check=space_check)
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
        if writer.store != out:
            log(f"writing {out} through the journal {writer.store} (safe to kill and on a full disk: rerun "
                "the same command to resume; converted into one HDF5 file when complete)")
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
            run_batches(writer, upstream, batch_seconds, frame_stride, workers, strict, progress, segment_plan,
                        space_check=space_check)
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
    if not sers.cache.exists(out) or overwrite:
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
    try:  # every finished row is read before it is trusted: missing, damaged or inconsistent ones are redone
        damage = writer.verify(frames_match_pooled=True)
    except BaseException:
        writer.close()
        raise
    for found in damage:
        ids = ", ".join(map(str, writer.ids(found.rows[:3]))) + (" ..." if len(found.rows) > 3 else "")
        log(f"{out}: {found.array} of {len(found.rows)} finished utterance(s) ({ids}) {found.what}: "
            "extracting them again")
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
        "language_original": column("language_original"),  # "": as language (the cache fills it in)
        "start": [np.nan if v is None else v for v in column("start")],
        "end": [np.nan if v is None else v for v in column("end")],
        "duration": [p.n_samples / sample_rate for p in planned],
        "n_samples": [p.n_samples for p in planned], "n_frames": stored_frames,
    }


def _check_disk(out: Path, upstream, n_rows, total_frames, n_stats, n_frame_layers, log, audio_bytes=0,
                space_check: bool = True) -> None:
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
    if pooled + frames > free and space_check:
        raise SersError(f"the cache needs about {format_bytes(pooled + frames)} but {parent} has "
                        f"{format_bytes(free)} free; store fewer frames (--frame-layers 0,6,12, "
                        "--frame-stride 2), choose another --out, or add --no-space-check to go on (the estimate "
                        "is before compression)")


def _write_failure(out: Path, exc: Exception) -> str | None:
    """One line for a failed write (what happened, what is kept, how to go on); None for other errors.
    Both back-ends keep every finished row through a failed write (HDF5 caches are written into a
    zarr journal and converted when complete), so the way on is always to rerun."""
    if not sers.cache.exists(out):  # zarr then fails with KeyError or FileNotFoundError
        return (f"{out} was deleted or moved while being written; nothing in it can be resumed: rerun the same "
                "command to start again")
    if not isinstance(exc, OSError) or getattr(exc, "errno", None) is None:
        return None
    return (f"{out}: {describe_os_error(exc)}; every finished utterance is kept: fix that and rerun the same "
            "command to resume")
