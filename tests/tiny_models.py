"""Tiny speech encoders built from `transformers` configs, for tests that need a real model.

Each model is saved with ``save_pretrained`` (weights, config and the feature extractor),
so a test loads it back through ``from_pretrained(path)``: the code path a user hits with
a hub id. The models are small (hidden size 32, 2 layers) but keep the real geometry
where it matters for extraction: the wav2vec2-family conv stack has the real kernels and
strides (receptive field 400 samples, hop 320 samples = 50 frames/s) with few channels,
and the Whisper encoder takes 80 mel bins over 30 s (max_source_positions 1500).

Use from another test file::

    from tiny_models import make_tiny_model, tiny_model   # tiny_model is a pytest fixture

    def test_something(tiny_model):
        path = tiny_model("wavlm")                     # built once per test session
        path = tiny_model("wav2vec2-layer", seed=1)    # overrides go into the cache key
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

FAMILIES = (
    "wav2vec2",  # group-norm conv stack, as wav2vec2-base (zero-padded, no attention mask)
    "wav2vec2-layer",  # layer-norm conv stack, as wav2vec2-large-lv60 (attention mask)
    "hubert",
    "wavlm",
    "data2vec-audio",
    "unispeech-sat",
    "whisper",
)

# The real wav2vec2 conv feature encoder, with 16 channels instead of 512.
_CONV_STACK = dict(
    conv_dim=(16,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
)
_TINY_TRANSFORMER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)

# family -> (config class, default model class, config fields)
_SPECS = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", dict(feat_extract_norm="group")),
    "wav2vec2-layer": (
        "Wav2Vec2Config",
        "Wav2Vec2Model",
        dict(feat_extract_norm="layer", do_stable_layer_norm=True),
    ),
    "hubert": ("HubertConfig", "HubertModel", dict(feat_extract_norm="group")),
    "wavlm": ("WavLMConfig", "WavLMModel", dict(feat_extract_norm="group", num_buckets=32)),
    # data2vec-audio has a layer-norm conv stack and a 5-layer positional conv (kept real).
    "data2vec-audio": (
        "Data2VecAudioConfig",
        "Data2VecAudioModel",
        dict(num_conv_pos_embeddings=5, conv_pos_kernel_size=19),  # 5 stacked convs, as real
    ),
    "unispeech-sat": ("UniSpeechSatConfig", "UniSpeechSatModel", dict(feat_extract_norm="group")),
}


def _tiny_config(family: str, overrides: dict):
    if family == "whisper":
        fields = dict(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=1500,
            max_target_positions=32,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=3,
            begin_suppress_tokens=None,
        )
        return transformers.WhisperConfig(**{**fields, **overrides}), "WhisperModel"
    config_class, model_class, fields = _SPECS[family]
    fields = {**_CONV_STACK, **_TINY_TRANSFORMER, **fields, **overrides}
    return getattr(transformers, config_class)(**fields), model_class


def _feature_extractor(family: str, config):
    if family == "whisper":
        return transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    # As the real checkpoints: layer-norm models normalise the waveform and take a mask.
    layer_norm = getattr(config, "feat_extract_norm", "layer") == "layer"
    return transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=layer_norm,
        return_attention_mask=layer_norm,
    )


def make_tiny_model(
    family: str,
    path,
    *,
    seed: int = 0,
    model_class: str | None = None,
    feature_extractor: bool = True,
    **config_overrides,
) -> Path:
    """Build a seeded tiny model of ``family`` and ``save_pretrained`` it to ``path``.

    model_class: the transformers class to save, e.g. "WhisperForConditionalGeneration" or
    "Wav2Vec2ForCTC" (weights then carry the head's prefix, as hub checkpoints do);
    default the bare encoder class. feature_extractor=False leaves out
    preprocessor_config.json, as some fine-tuned checkpoints do. Other keyword arguments
    override config fields (e.g. num_hidden_layers=3).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; one of {FAMILIES}")
    config, default_class = _tiny_config(family, config_overrides)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class or default_class)(config).eval()
    path = Path(path)
    model.save_pretrained(path)
    if feature_extractor:
        _feature_extractor(family, config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A function ``(family, **options) -> path`` building each distinct model once per session."""
    built: dict[tuple, Path] = {}

    def get(family: str, **options) -> Path:
        key = (family, repr(sorted(options.items())))
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}")
            built[key] = make_tiny_model(family, folder, **options)
        return built[key]

    return get
