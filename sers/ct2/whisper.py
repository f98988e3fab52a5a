"""CTranslate2 ``WhisperSpec`` variables -> transformers ``WhisperForConditionalGeneration``.

The CTranslate2 converter (``converters/transformers.py`` ``WhisperLoader``) writes:

- ``encoder/conv1``, ``encoder/conv2`` (weight, bias); ``encoder/position_encodings/encodings``;
  ``encoder/layer_norm`` (gamma, beta); scalar ``encoder/num_heads``.
- per layer ``{encoder,decoder}/layer_N/``: ``self_attention/linear_0`` = q, k, v fused along
  the output rows (k has no bias in Whisper, so its third of the bias is zeros),
  ``self_attention/linear_1`` = out_proj, ``self_attention/layer_norm``; ``ffn/linear_0`` = fc1,
  ``ffn/linear_1`` = fc2, ``ffn/layer_norm`` = final_layer_norm.
- decoder layers also ``attention/linear_0`` = cross-attention q, ``attention/linear_1`` = k, v
  fused, ``attention/linear_2`` = out_proj, ``attention/layer_norm``.
- ``decoder/embeddings/weight``, ``decoder/position_encodings/encodings``, ``decoder/layer_norm``,
  ``decoder/projection/weight`` (usually an alias of the embeddings: tied), scalars
  ``decoder/num_heads``, ``decoder/activation`` (common_spec.Activation) and flags.

Everything else of the architecture is read off the shapes. Any stored weight that this
mapping does not place is an error, so a layout we do not know cannot load half-right.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from sers.errors import SersError

from .binary import ModelBin

# common_spec.Activation ids -> transformers activation names
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu"}
SAMPLING_RATE = 16000
HOP_LENGTH = 160  # 10 ms mel frames; conv2 has stride 2, so one encoder frame is 20 ms


def _layer_count(weights: dict, stack: str) -> int:
    indices = {int(m.group(1)) for name in weights if (m := re.match(rf"{stack}/layer_(\d+)/", name))}
    if indices != set(range(len(indices))):
        raise SersError(f"{stack} layers are numbered {sorted(indices)}, expected 0..{len(indices) - 1}")
    return len(indices)


def architecture(model_bin: ModelBin, weights: dict[str, np.ndarray]) -> dict:
    """WhisperConfig fields derived from the variable shapes and the stored head counts."""

    def shape(name):
        if name not in weights:
            raise SersError(f"{model_bin.path}: no variable {name}; not a Whisper layout this reader knows")
        return weights[name].shape

    if any(name.endswith(("/weight1", "/weight2")) for name in weights):
        raise SersError(f"{model_bin.path}: low-rank (lite-whisper) layers are not supported")
    d_model, num_mel_bins, _ = shape("encoder/conv1/weight")
    arch = dict(
        vocab_size=shape("decoder/embeddings/weight")[0],
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=_layer_count(weights, "encoder"),
        decoder_layers=_layer_count(weights, "decoder"),
        encoder_ffn_dim=shape("encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=shape("decoder/layer_0/ffn/linear_0/weight")[0],
        max_source_positions=shape("encoder/position_encodings/encodings")[0],
        max_target_positions=shape("decoder/position_encodings/encodings")[0],
    )
    for stack in ("encoder", "decoder"):
        heads = model_bin.scalar(f"{stack}/num_heads")
        if heads is None or heads <= 0 or d_model % heads:
            raise SersError(f"{model_bin.path}: {stack}/num_heads is {heads}; need a divisor of d_model {d_model}")
        arch[f"{stack}_attention_heads"] = int(heads)
    activation = model_bin.scalar("decoder/activation")
    if activation is not None and activation not in _ACTIVATIONS:
        raise SersError(f"{model_bin.path}: decoder/activation id {activation} is not supported")
    arch["activation_function"] = _ACTIVATIONS.get(activation, "gelu")
    if model_bin.scalar("decoder/scale_embeddings") not in (None, 0):
        raise SersError(f"{model_bin.path}: scaled decoder embeddings are not a Whisper layout")
    return {key: int(value) if not isinstance(value, str) else value for key, value in arch.items()}


class _StateDict:
    """Collects transformers tensors from CTranslate2 variables, remembering what was used."""

    def __init__(self, weights: dict[str, np.ndarray], path: Path):
        self.weights, self.path, self.used, self.tensors = weights, path, set(), {}

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise SersError(f"{self.path}: no variable {name}; not a Whisper layout this reader knows")
        self.used.add(name)
        return self.weights[name]

    def copy(self, ct2: str, hf: str):
        self.tensors[hf] = self.take(ct2)

    def norm(self, ct2: str, hf: str):
        self.copy(f"{ct2}/gamma", f"{hf}.weight")
        self.copy(f"{ct2}/beta", f"{hf}.bias")

    def linear(self, ct2: str, hf: str):
        self.copy(f"{ct2}/weight", f"{hf}.weight")
        self.copy(f"{ct2}/bias", f"{hf}.bias")

    def fused(self, ct2: str, hf: str, projections: tuple[str, ...]):
        """Split rows fused by ``utils.fuse_linear`` back into q/k/v projections."""
        weight = self.take(f"{ct2}/weight")
        bias = self.take(f"{ct2}/bias")
        for proj, w, b in zip(projections, np.split(weight, len(projections)), np.split(bias, len(projections))):
            self.tensors[f"{hf}.{proj}.weight"] = w
            if proj == "k_proj":  # Whisper keys have no bias; the converter stored zeros
                if np.any(b != 0):
                    raise SersError(f"{self.path}: {ct2}/bias is non-zero for the keys; not a Whisper layout")
            else:
                self.tensors[f"{hf}.{proj}.bias"] = b

    def layer(self, stack: str, index: int, cross_attention: bool):
        ct2, hf = f"{stack}/layer_{index}", f"model.{stack}.layers.{index}"
        self.norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        self.fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
        self.linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        if cross_attention:
            self.norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
            self.linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            self.fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
            self.linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        self.norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
        self.linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
        self.linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")


def state_dict(weights: dict[str, np.ndarray], arch: dict, path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The transformers state dict, and whether the output projection is tied to the embeddings."""
    sd = _StateDict(weights, path)
    for conv in ("conv1", "conv2"):
        sd.copy(f"encoder/{conv}/weight", f"model.encoder.{conv}.weight")
        sd.copy(f"encoder/{conv}/bias", f"model.encoder.{conv}.bias")
    sd.copy("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight")
    sd.norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(arch["encoder_layers"]):
        sd.layer("encoder", i, cross_attention=False)
    sd.copy("decoder/embeddings/weight", "model.decoder.embed_tokens.weight")
    sd.copy("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight")
    sd.norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(arch["decoder_layers"]):
        sd.layer("decoder", i, cross_attention=True)
    sd.copy("decoder/projection/weight", "proj_out.weight")
    if np.any(weights.get("decoder/projection/bias", 0) != 0):
        raise SersError(f"{path}: decoder/projection/bias is non-zero; Whisper's output projection has no bias")
    sd.used.add("decoder/projection/bias")

    unused = sorted(set(weights) - sd.used)
    if unused:
        raise SersError(f"{path}: variables not in the Whisper layout: {', '.join(unused[:5])}")
    tied = np.array_equal(sd.tensors["proj_out.weight"], sd.tensors["model.decoder.embed_tokens.weight"])
    # Own copies: aliased variables and the q/k/v splits would otherwise share memory,
    # which save_pretrained refuses for anything but the declared tie.
    tensors = {name: torch.tensor(value, dtype=torch.float32) for name, value in sd.tensors.items()}
    if tied:  # one tensor for both, as transformers ties them
        tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    return tensors, tied


def token_ids(vocabulary: list[str], path: Path) -> dict[str, int]:
    """Ids of the special tokens Whisper generation needs (end and start of transcript required)."""
    index = {token: i for i, token in enumerate(vocabulary)}
    wanted = dict(
        eot="<|endoftext|>", sot="<|startoftranscript|>", no_timestamps="<|notimestamps|>",
        prev="<|startofprev|>", transcribe="<|transcribe|>", translate="<|translate|>",
    )
    for required in ("eot", "sot"):
        if wanted[required] not in index:
            raise SersError(f"{path}: the vocabulary has no {wanted[required]}; not a Whisper vocabulary")
    return {key: index[token] for key, token in wanted.items() if token in index}


def build_model(arch: dict, tensors: dict, tied: bool, ids: dict) -> WhisperForConditionalGeneration:
    config = WhisperConfig(
        **arch,
        pad_token_id=ids["eot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        tie_word_embeddings=tied,
        begin_suppress_tokens=None,  # generation settings live in the generation config only
    )
    with torch.device("meta"):  # no random init: every tensor comes from model.bin
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(tensors, strict=True, assign=True)
    if tied:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    model.eval()
    return model


def generation_config(model_config: WhisperConfig, ids: dict, vocabulary, ct2_config: dict) -> GenerationConfig:
    """What ``model.generate`` needs, from the vocabulary and CTranslate2's config.json.

    Multilingual or English-only is decided as CTranslate2 does (whisper.cc: a vocabulary
    of 51865 or more tokens); language ids come from config.json's ``lang_ids``.
    """
    multilingual = model_config.vocab_size >= 51865
    fields = dict(
        decoder_start_token_id=ids["sot"], eos_token_id=ids["eot"], pad_token_id=ids["eot"], bos_token_id=ids["eot"],
        no_timestamps_token_id=ids.get("no_timestamps"), prev_sot_token_id=ids.get("prev"),
        suppress_tokens=ct2_config.get("suppress_ids"), begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        alignment_heads=ct2_config.get("alignment_heads"),
        max_length=model_config.max_target_positions, is_multilingual=multilingual,
    )
    if multilingual and ct2_config.get("lang_ids"):
        fields["lang_to_id"] = {vocabulary[i]: i for i in ct2_config["lang_ids"]}
        fields["task_to_id"] = {task: ids[task] for task in ("transcribe", "translate") if task in ids}
    return GenerationConfig(**{key: value for key, value in fields.items() if value is not None})


def feature_extractor(folder: Path, arch: dict) -> WhisperFeatureExtractor:
    """preprocessor_config.json when the folder has one, else log-mel settings from the model.

    The window is what the encoder's positions cover (max_source_positions encoder frames
    of 20 ms each: 30 s for every released Whisper).
    """
    if (folder / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(str(folder))
        if extractor.feature_size != arch["num_mel_bins"]:
            raise SersError(
                f"{folder / 'preprocessor_config.json'}: feature_size {extractor.feature_size} "
                f"but the model's conv1 takes {arch['num_mel_bins']} mel bins"
            )
        return extractor
    window_samples = arch["max_source_positions"] * 2 * HOP_LENGTH
    chunk_length = window_samples // SAMPLING_RATE
    if chunk_length * SAMPLING_RATE != window_samples:
        raise SersError(
            f"{folder}: max_source_positions {arch['max_source_positions']} is not a whole number of seconds "
            "of audio; add a preprocessor_config.json"
        )
    return WhisperFeatureExtractor(
        feature_size=arch["num_mel_bins"], sampling_rate=SAMPLING_RATE, hop_length=HOP_LENGTH,
        chunk_length=chunk_length, n_fft=400,
    )
