"""The batch loop of `sers extract` (:mod:`sers.pipeline.extract`): decode ahead, run the model, write.

Rows go to the model in length-sorted batches of at most ``batch_seconds`` of padded audio,
decoded a few batches ahead by worker processes; each utterance's hidden states are pooled
(padding excluded) and written, and the writer flushes and marks rows done as it goes. A batch
that runs out of memory is retried one utterance at a time; Ctrl-C, SIGTERM and write errors
keep every finished row.
"""
from __future__ import annotations

import errno
import math
import shutil
import signal
import threading
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import torch

import sers.cache
from sers.cache import schema
from sers.inputs.audio import load_batch
from sers.errors import SersError
from sers.display.tables import format_bytes
from sers.workers import worker_pool

# A run stops cleanly (every finished row kept) when its disk has less left than twice what the
# largest of its batches writes, plus this, rather than meet ENOSPC mid-write (a zarr store then
# loses only the chunk being written). The slack covers what a batch writes beside its rows: the
# attributes and done flags rewritten, the errors table, a chunk's temporary copy.
DISK_SLACK_BYTES = 8 * 2**20


def plan_batches(cost_seconds, batch_seconds: float) -> list[list[int]]:
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


def run_batches(writer, upstream, batch_seconds, frame_stride, workers, strict, progress, segment_plan=None,
                space_check: bool = True) -> None:
    from tqdm.auto import tqdm

    with sers.cache.open(writer.path) as cache:
        table = cache.all_utterances
    durations = table.duration
    costs = [upstream.processed_seconds(int(n)) for n in table.n_samples]
    pending = set(writer.pending_rows().tolist())
    todo = [b for b in plan_batches(costs, batch_seconds) if pending.intersection(b)]
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
        reserve = _disk_reserve(writer, table, todo) if space_check else 0
        for i, batch in enumerate(todo):
            _check_space_left(writer.store, reserve)
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


def _disk_reserve(writer, table, batches) -> int:
    """Bytes to keep free before each batch: twice the most that one of this run's batches writes,
    plus DISK_SLACK_BYTES. A batch writes the pooled chunks it completes (a chunk is written whole,
    once its rows are all done: at most one more than its rows fill) and its rows' stored frames,
    in the frame chunks they touch; from this run's own rows and shapes, not from a model's widest
    batch, which refused a 33 kB cache on a disk with 20 MB free (issue 24)."""
    if not batches:
        return 0
    pooled_row = writer.num_layers * writer.hidden_size * 4 * len(writer.pool_stats)  # float32
    frame_item = writer.frame_dtype.itemsize
    frame_row = writer.hidden_size * frame_item * len(writer.frame_layers)
    frame_chunk = min(schema.frame_chunk_rows(writer.hidden_size), int(np.sum(table.n_frames)))  # as laid out
    most = 0
    for batch in batches:
        pooled = min(writer.n_rows, (math.ceil(len(batch) / writer.chunk_rows) + 1) * writer.chunk_rows) * pooled_row
        frames = (int(np.sum(table.n_frames[batch])) + 2 * frame_chunk) * frame_row if frame_row else 0
        most = max(most, pooled + frames)
    return 2 * most + DISK_SLACK_BYTES


def _check_space_left(path: Path, reserve: int) -> None:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "vanished", str(path))
    free = shutil.disk_usage(path.resolve().parent).free
    if free < reserve:
        raise SersError(f"{path}: the disk is almost full ({format_bytes(free)} left, a batch of this run needs "
                        f"up to {format_bytes(reserve)} with room to spare); stopped before it fills up, every "
                        "finished utterance is kept: free space and rerun the same command to resume (or add "
                        "--no-space-check to go on: the estimate is before compression)")


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
    pooled = {}
    if "mean" in pool_stats:
        # float32: torch sums in cascades (relative error ~1e-7 over thousands of frames); a float64
        # copy of every layer's frames cost ~1.5% of Whisper base's extraction time on 2 CPU cores.
        pooled["mean"] = states.float().mean(dim=1).numpy()
    if "std" in pool_stats:
        pooled["std"] = states.double().std(dim=1, unbiased=False).float().numpy()
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
