"""How fast is `sers extract` next to a per-file loop and next to the forward pass alone?

    python benchmarks/extract.py                       # base-size WavLM from config, CPU, fp32
    python benchmarks/extract.py --device cuda --dtype bfloat16 --utterances 400

Three ways over the same generated files and the same model (random weights, built from a
config: speed does not depend on the weights):
  per-file loop   sf.read, model(x, output_hidden_states=True) one file at a time, mean-pool, np.save
  forward only    the model's forward pass on sers's batches of pre-decoded audio (the limit)
  sers extract    the whole stage: decoding workers, batching, pooling, writing the cache
Prints a table and writes it to docs/benchmarks/extract.md (one section per device and size).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section  # noqa: E402

from sers.manifest import read_manifest  # noqa: E402
from sers.pipeline.extract import _batches, extract  # noqa: E402
from sers.tables import format_markdown_table, format_table  # noqa: E402
from sers.upstream import load_upstream  # noqa: E402

SIZES = {  # WavLM geometry: the real conv front end, transformer width and depth by size
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 conv_dim=(64,) * 7),
    "small": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def build_model(folder: Path, size: str) -> Path:
    config = transformers.WavLMConfig(**SIZES[size])
    torch.manual_seed(0)
    transformers.WavLMModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=False,
                                          return_attention_mask=False).save_pretrained(folder)
    return folder


def make_audio(folder: Path, n: int, min_s: float, max_s: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = ["path,label,split,speaker,language"]
    for i in range(n):
        samples = int(16000 * rng.uniform(min_s, max_s))
        t = np.arange(samples) / 16000
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.normal(size=samples)
        sf.write(folder / f"u{i:05d}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i:05d}.wav,{'NHAS'[i % 4]},train,s{i % 7},en")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def per_file_loop(model_dir: Path, manifest: Path, out: Path, device: str) -> float:
    model = transformers.AutoModel.from_pretrained(model_dir).to(device).eval()
    out.mkdir()
    started = time.perf_counter()
    for utt in read_manifest(manifest):
        wave, _ = sf.read(utt.path, dtype="float32")
        with torch.no_grad():
            states = model(torch.from_numpy(wave)[None].to(device), output_hidden_states=True).hidden_states
        pooled = torch.stack(states)[:, 0].mean(1).float().cpu().numpy()
        np.save(out / f"{utt.id}.npy", pooled)
    return time.perf_counter() - started


def forward_only(model_dir: Path, manifest: Path, batch_seconds: float, device: str, dtype: str) -> float:
    upstream = load_upstream(str(model_dir), device=device, dtype=dtype)
    utterances = read_manifest(manifest)
    waves = [sf.read(u.path, dtype="float32")[0] for u in utterances]
    order = sorted(range(len(waves)), key=lambda i: (len(waves[i]), utterances[i].id))
    costs = [upstream.processed_seconds(len(waves[i])) for i in order]
    batches = [[waves[order[r]] for r in batch] for batch in _batches(costs, batch_seconds)]
    started = time.perf_counter()
    for batch in batches:
        upstream.hidden_states(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def sers_extract(model_dir, manifest, out, batch_seconds, device, dtype, frame_layers, workers) -> float:
    started = time.perf_counter()
    extract(read_manifest(manifest), str(model_dir), out, device=device, dtype=dtype,
            batch_seconds=batch_seconds, frame_layers=frame_layers, workers=workers, progress=False,
            log=lambda *_: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="base")
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks/extract.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "model", args.size)
        (tmp / "audio").mkdir()
        manifest = make_audio(tmp / "audio", args.utterances, args.min_seconds, args.max_seconds)
        audio_seconds = sum(sf.info(u.path).duration for u in read_manifest(manifest))
        transformers.logging.disable_progress_bar()
        forward_only(model_dir, manifest, args.batch_seconds, args.device, args.dtype)  # warm-up
        timings = {
            "per-file loop (fp32, one file at a time)": per_file_loop(model_dir, manifest, tmp / "npy", args.device),
            f"forward only ({args.dtype}, sers batches)": forward_only(model_dir, manifest, args.batch_seconds,
                                                                      args.device, args.dtype),
            "sers extract, pooled only": sers_extract(model_dir, manifest, tmp / "a.zarr", args.batch_seconds,
                                                      args.device, args.dtype, "none", args.workers),
            "sers extract, pooled + all frames": sers_extract(model_dir, manifest, tmp / "b.zarr",
                                                              args.batch_seconds, args.device, args.dtype,
                                                              "all", args.workers),
        }
    forward = next(v for k, v in timings.items() if k.startswith("forward only"))
    loop = next(v for k, v in timings.items() if k.startswith("per-file"))
    header = ["method", "seconds", "audio s / s", "vs forward only", "vs per-file loop"]
    rows = [[name, f"{t:.2f}", f"{audio_seconds / t:.1f}", f"{forward / t:.2f}", f"{loop / t:.2f}"]
            for name, t in timings.items()]
    title = (f"WavLM-{args.size} from config ({SIZES[args.size]['num_hidden_layers']} layers x "
             f"{SIZES[args.size]['hidden_size']}), {args.utterances} files, {audio_seconds:.0f} s of audio "
             f"({args.min_seconds:g}-{args.max_seconds:g} s each), batch {args.batch_seconds:g} s, "
             f"{args.device} {args.dtype}, {args.workers} decoding worker(s)")
    print(title)
    print(format_table(header, rows))
    if not args.no_write:
        command = "python benchmarks/extract.py " + " ".join(sys.argv[1:])
        write_section(f"extract-{args.device.split(':')[0]}-{args.size}", "\n".join([
            f"## Extraction: {args.device}, WavLM-{args.size}", "", f"`{command.strip()}` on {machine()}.", "",
            title + ".", "", format_markdown_table(header, rows), "",
            "Ratios above 1 mean faster than the reference. *forward only* is the limit: the model on "
            "pre-decoded audio in sers's batches, without decoding, pooling or writing.",
        ]))


if __name__ == "__main__":
    main()
