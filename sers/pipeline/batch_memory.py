"""`--batch-seconds auto`: the largest batch that fits the GPU's free memory.

A batch's memory is close to linear in its padded seconds at a given utterance length (the
hidden states of every layer are held until they are copied to the CPU), and grows with the
length through attention. So one probe batch of the longest utterances the run will meet, or
of the model's window (Whisper: 30 s), measures the bytes per second of audio, and the budget
is a fraction of the free memory divided by that. On a CPU there is no memory wall worth
probing: the fixed default, at which length-sorted batches measured fastest
(docs/benchmarks/extract.md), is used.
"""
from __future__ import annotations

import numpy as np

CPU_BATCH_SECONDS = 200.0
PROBE_SECONDS = 30.0        # padded audio in the probe batch
MEMORY_FRACTION = 0.7       # of the free memory: room for fragmentation and the pooling buffers
MAX_BATCH_SECONDS = 20000.0  # beyond this the batch no longer speeds anything up


def batch_seconds_for_memory(free_bytes: float, probe_peak_bytes: float, probe_seconds: float,
                             fraction: float = MEMORY_FRACTION) -> float:
    """Seconds of padded audio per batch so that the batch's memory is ``fraction`` of ``free_bytes``,
    given that ``probe_seconds`` took ``probe_peak_bytes`` (at least the probe itself, at most MAX)."""
    if probe_peak_bytes <= 0 or probe_seconds <= 0:
        raise ValueError("the probe must have used memory and audio")
    fitting = fraction * free_bytes / (probe_peak_bytes / probe_seconds)
    return float(min(max(fitting, probe_seconds), MAX_BATCH_SECONDS))


def auto_batch_seconds(upstream, longest_samples: int, log=print) -> float:
    """Measure one probe batch on ``upstream``'s device and size batches to its free memory."""
    import torch

    if upstream.device.type != "cuda":
        return CPU_BATCH_SECONDS
    length = longest_samples
    if upstream.max_window_seconds is not None:  # windowed models never see more than one window at once
        length = min(length, int(upstream.max_window_seconds * upstream.sample_rate))
    cost = upstream.processed_seconds(length)
    copies = max(1, round(PROBE_SECONDS / cost))
    noise = np.random.default_rng(0).standard_normal(length).astype(np.float32) * 0.1
    torch.cuda.synchronize(upstream.device)
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(upstream.device)
    torch.cuda.reset_peak_memory_stats(upstream.device)
    upstream.hidden_states([noise] * copies)
    peak = torch.cuda.max_memory_allocated(upstream.device) - baseline
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(upstream.device)
    seconds = batch_seconds_for_memory(free, peak, copies * cost)
    log(f"--batch-seconds auto: {seconds:.0f} s of padded audio per batch ({peak / 2**20:.0f} MiB for a probe of "
        f"{copies} x {cost:.1f} s; {MEMORY_FRACTION:.0%} of {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB)")
    return seconds
