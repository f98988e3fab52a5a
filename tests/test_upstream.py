"""sers.upstream on tiny models of every family, saved and loaded through from_pretrained."""

import json

import numpy as np
import pytest
import torch
import transformers
from tiny_models import FAMILIES, tiny_model  # noqa: F401  (tiny_model is a fixture)

from sers.errors import SersError
from sers.upstream import load_upstream

CONV_FAMILIES = [f for f in FAMILIES if f != "whisper"]
SR = 16000
FP32_ATOL = 1e-4  # batched vs alone and wrapper vs hand computation, float32 (measured ~1e-6)


def audio(num_samples, seed=0):
    """A tone in noise, roughly speech level."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(num_samples)).astype(
        np.float32
    )


def reference_hidden_states(model, inputs):
    """(layers, frames, hidden) of one unpadded input, straight from the transformers model.

    The last layer is the encoder output (last_hidden_state), the wrapper's documented
    convention; the others are exactly ``output.hidden_states``.
    """
    with torch.no_grad():
        output = model(inputs, output_hidden_states=True)
    layers = list(output.hidden_states[:-1]) + [output.last_hidden_state]
    return torch.stack([layer[0] for layer in layers])


def conv_reference(path, waveform):
    model = transformers.AutoModel.from_pretrained(path).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(path)
    inputs = extractor(waveform, sampling_rate=SR, return_tensors="pt")["input_values"]
    return reference_hidden_states(model, inputs)


def whisper_reference(encoder, path, window, keep):
    """Encoder states of one <= 30 s window, padded to 30 s, first `keep` frames."""
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(path)
    features = extractor(window, sampling_rate=SR, return_tensors="pt")["input_features"]
    return reference_hidden_states(encoder.eval(), features)[:, :keep]


@pytest.mark.parametrize("family", CONV_FAMILIES)
def test_conv_family_equals_hand_computation(tiny_model, family):
    path = tiny_model(family)
    upstream = load_upstream(path)
    waveform = audio(SR + 123)
    (states,) = upstream.hidden_states([waveform])
    expected = conv_reference(path, waveform)
    assert states.dtype == torch.float32 and states.device.type == "cpu"
    assert states.shape == (3, upstream.n_frames(len(waveform)), 32) == expected.shape
    torch.testing.assert_close(states, expected, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("family", CONV_FAMILIES)
def test_batched_equals_one_at_a_time(tiny_model, family):
    upstream = load_upstream(tiny_model(family))
    waveforms = [audio(n, seed=i) for i, n in enumerate([8123, 16000, 4001, 401, 16000])]
    batched = upstream.hidden_states(waveforms)
    for waveform, together in zip(waveforms, batched):
        (alone,) = upstream.hidden_states([waveform])
        assert together.shape == alone.shape == (3, upstream.n_frames(len(waveform)), 32)
        torch.testing.assert_close(together, alone, atol=FP32_ATOL, rtol=0)
    # The per-utterance swap is undone after the call.
    assert "forward" not in vars(upstream.model.feature_extractor)
    assert "forward" not in vars(upstream.model.encoder.pos_conv_embed)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
def test_plain_zero_padding_would_change_group_norm_models(tiny_model, family):
    """Why the wrapper runs the front-end per utterance: the naive batch is far off."""
    path = tiny_model(family)
    model = transformers.AutoModel.from_pretrained(path).eval()
    short, long = audio(8001, seed=1), audio(16000, seed=2)
    batch = torch.zeros(2, len(long))
    batch[0, : len(short)] = torch.from_numpy(short)
    batch[1] = torch.from_numpy(long)
    with torch.no_grad():
        padded = model(batch, output_hidden_states=True).last_hidden_state[0]
    alone = conv_reference(path, short)[-1]
    assert (padded[: len(alone)] - alone).abs().max() > 0.1


@pytest.mark.parametrize("family", ["wav2vec2", "data2vec-audio"])
def test_frame_counts_for_odd_lengths(tiny_model, family):
    upstream = load_upstream(tiny_model(family))
    assert upstream.frame_rate == 50 and upstream.sample_rate == SR
    assert upstream.min_samples == 400 and upstream.max_window_seconds is None
    expected = {400: 1, 719: 1, 720: 2, 16000: 49, 16001: 49, 33333: 103}  # (n - 400) // 320 + 1
    assert {n: upstream.n_frames(n) for n in expected} == expected
    lengths = [401, 719, 1041, 12345, 33333]
    states = upstream.hidden_states([audio(n) for n in lengths])
    assert [s.shape[1] for s in states] == [upstream.n_frames(n) for n in lengths]


def test_whisper_keeps_frames_of_real_audio(tiny_model):
    path = tiny_model("whisper")
    upstream = load_upstream(path, whisper_input="padded")
    assert (upstream.family, upstream.num_layers, upstream.hidden_size) == ("whisper", 3, 32)
    assert upstream.frame_rate == 50 and upstream.max_window_seconds == 30.0
    assert upstream.n_frames(52800) == 165  # 3.3 s
    assert upstream.n_frames(52801) == 166 and upstream.n_frames(480000) == 1500
    waveform = audio(52800)
    (states,) = upstream.hidden_states([waveform])
    encoder = transformers.AutoModel.from_pretrained(path).encoder
    expected = whisper_reference(encoder, path, waveform, 165)
    assert states.shape == (3, 165, 32)
    torch.testing.assert_close(states, expected, atol=FP32_ATOL, rtol=0)


def test_whisper_long_audio_joins_30s_windows(tiny_model):
    path = tiny_model("whisper")
    upstream = load_upstream(path, whisper_input="padded")
    waveform, short = audio(45 * SR, seed=3), audio(12345, seed=4)
    long_states, short_states = upstream.hidden_states([waveform, short])
    encoder = transformers.AutoModel.from_pretrained(path).encoder
    first = whisper_reference(encoder, path, waveform[: 30 * SR], 1500)
    second = whisper_reference(encoder, path, waveform[30 * SR :], 750)
    assert long_states.shape == (3, 2250, 32) == (3, upstream.n_frames(45 * SR), 32)
    joined = torch.cat([first, second], dim=1)
    torch.testing.assert_close(long_states, joined, atol=FP32_ATOL, rtol=0)
    (short_alone,) = upstream.hidden_states([short])
    torch.testing.assert_close(short_states, short_alone, atol=FP32_ATOL, rtol=0)
    assert upstream.processed_seconds(45 * SR) == 60.0


def trimmed_reference(path, window):
    """Encoder states of one <= 30 s window fed only its own frames: transformers' own
    WhisperEncoder, rebuilt with max_source_positions = the window's frames (the positional
    embeddings cut to them), so that its forward takes the short input."""
    full = transformers.AutoModel.from_pretrained(path).encoder
    frames = -(-len(window) // 320)
    config = transformers.WhisperConfig.from_pretrained(path, max_source_positions=frames)
    encoder = transformers.models.whisper.modeling_whisper.WhisperEncoder(config)
    weights = full.state_dict()
    weights["embed_positions.weight"] = weights["embed_positions.weight"][:frames]
    encoder.load_state_dict(weights)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(path)
    padded = np.pad(window, (0, frames * 320 + 400 - len(window)))  # zeros after, as 30 s padding has
    features = extractor(padded, sampling_rate=SR, padding="max_length", max_length=len(padded),
                         return_tensors="pt")["input_features"][:, :, : 2 * frames]
    return reference_hidden_states(encoder.eval(), features)


def test_whisper_trimmed_equals_an_encoder_of_that_length(tiny_model):
    path = tiny_model("whisper")
    upstream = load_upstream(path, whisper_input="trimmed")
    waveform = audio(52801)  # 3.3 s and one sample: 166 frames
    (states,) = upstream.hidden_states([waveform])
    assert states.shape == (3, 166, 32)
    torch.testing.assert_close(states, trimmed_reference(path, waveform), atol=FP32_ATOL, rtol=0)
    assert upstream.processed_seconds(52801) == pytest.approx(3.32)
    assert upstream.describe()["whisper_input"] == "trimmed"
    assert load_upstream(path).whisper_input == "trimmed"  # the default for Whisper
    padded = load_upstream(path, whisper_input="padded")
    assert padded.describe()["whisper_input"] == "padded" and padded.processed_seconds(52801) == 30.0
    # Padding is not a detail: the last layer changes when real frames no longer see 27 s of silence.
    (padded_states,) = padded.hidden_states([waveform])
    assert (padded_states[-1] - states[-1]).abs().max() > 0.01


def test_whisper_trimmed_batched_equals_one_at_a_time(tiny_model):
    upstream = load_upstream(tiny_model("whisper"), whisper_input="trimmed")
    lengths = [52800, 401, 16000, 45 * SR, 9999, 16000]  # one of 45 s: a full window and a trimmed one
    waveforms = [audio(n, seed=i) for i, n in enumerate(lengths)]
    batched = upstream.hidden_states(waveforms)
    for waveform, together in zip(waveforms, batched):
        (alone,) = upstream.hidden_states([waveform])
        assert together.shape == alone.shape == (3, upstream.n_frames(len(waveform)), 32)
        torch.testing.assert_close(together, alone, atol=FP32_ATOL, rtol=0)


def test_whisper_trimmed_and_padded_agree_on_full_windows(tiny_model):
    path = tiny_model("whisper")
    waveform = audio(45 * SR, seed=3)
    (padded,) = load_upstream(path, whisper_input="padded").hidden_states([waveform])
    (trimmed,) = load_upstream(path, whisper_input="trimmed").hidden_states([waveform])
    torch.testing.assert_close(trimmed[:, :1500], padded[:, :1500], atol=FP32_ATOL, rtol=0)
    torch.testing.assert_close(trimmed[:, 1500:], trimmed_reference(path, waveform[30 * SR:]),
                               atol=FP32_ATOL, rtol=0)


def test_whisper_input_is_checked(tiny_model):
    with pytest.raises(SersError, match="--whisper-input 'cropped': choose padded or trimmed"):
        load_upstream(tiny_model("whisper"), whisper_input="cropped")
    with pytest.raises(SersError, match="--whisper-input trimmed applies to Whisper models; .* is a 'wavlm' model"):
        load_upstream(tiny_model("wavlm"), whisper_input="trimmed")
    assert load_upstream(tiny_model("wavlm")).whisper_input is None


@pytest.mark.parametrize(
    "family, head_class, body",
    [("whisper", "WhisperForConditionalGeneration", "model.encoder"),
     ("wav2vec2-layer", "Wav2Vec2ForCTC", "wav2vec2")],
)
def test_checkpoints_saved_with_a_head_load_their_encoder(tiny_model, family, head_class, body):
    path = tiny_model(family, model_class=head_class)
    upstream = load_upstream(path)
    module = getattr(transformers, head_class).from_pretrained(path)
    for name in body.split("."):
        module = getattr(module, name)
    saved = dict(module.named_parameters())
    loaded = dict(upstream.model.named_parameters())
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_folder_without_feature_extractor_uses_family_defaults(tiny_model):
    with_fe = load_upstream(tiny_model("wavlm", seed=5))
    without_fe = load_upstream(tiny_model("wavlm", seed=5, feature_extractor=False))
    assert with_fe.describe()["feature_extractor"]["source"] == "preprocessor_config.json"
    source = without_fe.describe()["feature_extractor"]["source"]
    assert source.startswith("defaults for the family")
    waveform = audio(9000)
    torch.testing.assert_close(
        without_fe.hidden_states([waveform])[0], with_fe.hidden_states([waveform])[0]
    )
    whisper = load_upstream(tiny_model("whisper", feature_extractor=False))
    assert whisper.feature_extractor.feature_size == 80
    assert whisper.hidden_states([waveform])[0].shape == (3, 29, 32)


@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
def test_too_short_or_bad_audio_is_a_clear_error(tiny_model, family):
    upstream = load_upstream(tiny_model(family))
    assert upstream.min_samples == 400
    too_short = "audio too short: 399 samples, the model needs at least 400"
    with pytest.raises(SersError, match=too_short):
        upstream.hidden_states([audio(8000), np.zeros(399, np.float32)])
    with pytest.raises(SersError, match="audio too short: 0 samples"):
        upstream.hidden_states([np.zeros(0, np.float32)])
    with pytest.raises(SersError, match="mono"):
        upstream.check_audio(np.zeros((2, 8000), np.float32))
    with pytest.raises(SersError, match="NaN"):
        upstream.check_audio(np.full(8000, np.nan, np.float32))
    assert upstream.hidden_states([]) == []
    # The shortest accepted input: 1 conv frame, or 2 Whisper frames of 320 samples.
    frames = {"wav2vec2": 1, "whisper": 2}[family]
    assert upstream.hidden_states([np.zeros(400, np.float32)])[0].shape == (3, frames, 32)


@pytest.mark.parametrize("family", ["wav2vec2", "data2vec-audio", "whisper"])
def test_bfloat16_autocast_on_cpu_is_close_to_float32(tiny_model, family):
    path = tiny_model(family)
    waveforms = [audio(20000, seed=6), audio(7000, seed=7)]
    full = load_upstream(path).hidden_states(waveforms)
    half = load_upstream(path, dtype="bfloat16")
    assert half.describe()["dtype"] == "bfloat16" and half.describe()["autocast"] is True
    for low, high in zip(half.hidden_states(waveforms), full):
        assert low.dtype == torch.float32 and low.shape == high.shape
        # bfloat16 keeps 8 bits of mantissa: a few percent of the feature scale.
        assert (low - high).abs().max() <= 0.1 * high.abs().max()
        cosine = torch.nn.functional.cosine_similarity(low, high, dim=-1)
        assert cosine.min() > 0.99


def test_float16_on_cpu_and_unknown_dtype_are_refused(tiny_model):
    path = tiny_model("wav2vec2")
    with pytest.raises(SersError, match="float16 needs a CUDA device"):
        load_upstream(path, dtype="float16")
    with pytest.raises(SersError, match="unknown dtype 'float64'"):
        load_upstream(path, dtype="float64")


def test_unsupported_or_missing_models_are_clear_errors(tmp_path):
    bert = tmp_path / "bert"
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64).save_pretrained(bert)
    with pytest.raises(SersError, match="is a 'bert' model; sers extracts from wav2vec2"):
        load_upstream(bert)
    with pytest.raises(SersError, match="nowhere: no such folder"):
        load_upstream(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SersError, match="cannot load model config for .*empty"):
        load_upstream(empty)


def test_describe_is_json_metadata(tiny_model):
    upstream = load_upstream(tiny_model("wav2vec2-layer"))
    info = json.loads(json.dumps(upstream.describe()))
    assert info["family"] == "wav2vec2" and info["model_class"] == "Wav2Vec2Model"
    assert (info["num_layers"], info["hidden_size"], info["frame_rate"]) == (3, 32, 50)
    assert info["dtype"] == "float32" and info["autocast"] is False
    assert info["config"]["feat_extract_norm"] == "layer"
    assert info["feature_extractor"]["do_normalize"] is True
    assert info["model_id"] == str(tiny_model("wav2vec2-layer"))
    assert info["transformers_version"] == transformers.__version__


def test_last_layer_is_the_encoder_output_for_pre_ln_models(tiny_model):
    """transformers 5 gives the pre-LayerNorm last layer for stable-layer-norm models; we keep
    the encoder output, as transformers 4 did."""
    path = tiny_model("wav2vec2-layer")
    model = transformers.AutoModel.from_pretrained(path).eval()
    waveform = audio(10000)
    inputs = transformers.AutoFeatureExtractor.from_pretrained(path)(
        waveform, sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        output = model(inputs, output_hidden_states=True)
    (states,) = load_upstream(path).hidden_states([waveform])
    torch.testing.assert_close(states[-1], output.last_hidden_state[0], atol=FP32_ATOL, rtol=0)
    assert (states[-1] - output.hidden_states[-1][0]).abs().max() > 0.1
    torch.testing.assert_close(states[1], output.hidden_states[1][0], atol=FP32_ATOL, rtol=0)
