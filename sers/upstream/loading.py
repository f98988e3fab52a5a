"""`load_upstream`: a hub id or a folder -> the wrapper of its model family (the registry ``FAMILIES``)."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import transformers

from sers.errors import SersError
from sers.upstream.base import DTYPES, Upstream
from sers.upstream.conv import ConvFrontEndUpstream
from sers.upstream.hub import offline_hint, offline_reason
from sers.upstream.whisper import WhisperUpstream

# The registry of model families: transformers' model_type -> the wrapper that runs it. Adding a
# family is one entry here (with a wrapper class, e.g. a new subclass of Upstream in its own module).
FAMILIES: dict[str, type[Upstream]] = {
    "wav2vec2": ConvFrontEndUpstream,
    "hubert": ConvFrontEndUpstream,
    "wavlm": ConvFrontEndUpstream,
    "data2vec-audio": ConvFrontEndUpstream,
    "unispeech-sat": ConvFrontEndUpstream,
    "whisper": WhisperUpstream,
}
CONV_FAMILIES = tuple(name for name, wrapper in FAMILIES.items() if wrapper is ConvFrontEndUpstream)

def load_upstream(
    model_id_or_path,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    whisper_input: str | None = None,
) -> Upstream:
    """Load a speech encoder by hub id or local folder through the transformers Auto classes.

    The weights are loaded in float32; dtype float16/bfloat16 runs them under
    ``torch.autocast``. float16 needs a CUDA device (CPU float16 kernels are missing or
    slow), so on CPU it is refused with a SersError: use bfloat16 there.
    ``whisper_input``: "padded" or "trimmed", how Whisper windows reach the encoder
    (:class:`WhisperUpstream`); None is "trimmed" for Whisper (it transfers as well as padded
    and costs a fraction, docs/benchmarks/transfer.md and extract.md); other families take
    only None or "padded", their one way.
    """
    if dtype not in DTYPES:
        raise SersError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise SersError(f"unknown device {str(device)!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SersError(f"device {device} asked for, but torch sees no CUDA GPU")
    if dtype == "float16" and device.type == "cpu":
        raise SersError("dtype float16 needs a CUDA device; on CPU use bfloat16 or float32")

    name = str(model_id_or_path)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise SersError(f"--model {name}: no such folder (give a local model folder or a hub id like "
                        "microsoft/wavlm-large)")
    from sers import ct2

    if ct2.is_ctranslate2_model(name):
        # faster-whisper / WhisperX folders: read model.bin with numpy, run transformers' Whisper.
        model, feature_extractor, source = ct2.load_whisper(name)
        upstream = WhisperUpstream(model=model.model, feature_extractor=feature_extractor,
                                   feature_extractor_source=source.get("feature_extractor_source",
                                                                       "CTranslate2 folder"),
                                   model_id=name, revision=revision, device=device, dtype=dtype,
                                   whisper_input=whisper_input)
        upstream.source = {k: v for k, v in source.items() if k != "architecture"}
        return upstream

    # A hub id with no hub in reach loads from the local cache only: no retries, a hint if absent.
    offline = None if Path(name).expanduser().is_dir() else offline_reason()
    hub = dict(revision=revision, trust_remote_code=trust_remote_code, **({"local_files_only": True} if offline else {}))
    try:
        config = transformers.AutoConfig.from_pretrained(name, **hub)
    except (OSError, ValueError) as err:
        if offline:
            raise SersError(offline_hint(name, offline)) from None
        raise SersError(f"cannot load model config for {name}: {_first_line(err)}") from None
    family = config.model_type
    if family not in FAMILIES:
        raise SersError(
            f"model {name} is a {family!r} model; sers extracts from {', '.join(FAMILIES)}"
        )
    upstream_class = FAMILIES[family]
    if upstream_class is not WhisperUpstream and whisper_input not in (None, "padded"):
        raise SersError(f"--whisper-input {whisper_input} applies to Whisper models; {name} is a {family!r} model")
    try:
        feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(name, **hub)
        feature_extractor_source = "preprocessor_config.json"
    except OSError:
        # Some fine-tuned checkpoints ship without one; the family's defaults are standard.
        feature_extractor = _default_feature_extractor(config)
        feature_extractor_source = "defaults for the family (model has no preprocessor_config.json)"
    try:
        # float32 whatever the checkpoint stores (transformers 5 defaults to dtype="auto").
        model = transformers.AutoModel.from_pretrained(name, dtype=torch.float32, **hub)
    except (OSError, ValueError) as err:
        if offline:
            raise SersError(offline_hint(name, offline)) from None
        raise SersError(f"cannot load model weights for {name}: {_first_line(err)}") from None
    except pickle.UnpicklingError:
        raise SersError(pickled_weights_message(name)) from None

    extra = {"whisper_input": whisper_input} if upstream_class is WhisperUpstream else {}
    return upstream_class(
        **extra,
        model=model,
        feature_extractor=feature_extractor,
        feature_extractor_source=feature_extractor_source,
        model_id=name,
        revision=revision,
        device=device,
        dtype=dtype,
    )


def pickled_weights_message(name: str) -> str:
    """What to do with a pytorch_model.bin that torch will not unpickle as plain tensors (weights_only
    refuses the other objects it holds: unpickling those runs code from the file)."""
    weights = f"{name}/pytorch_model.bin" if Path(name).is_dir() else "its pytorch_model.bin"
    return (f"{name}: this model ships pickled weights that hold more than tensors, which sers does not load "
            f"(unpickling them would run code from the file); sers loads safetensors (or pickles of plain tensors): "
            f"convert it with https://huggingface.co/spaces/safetensors/convert or, only if you trust its source, "
            f"python -c \"import torch, safetensors.torch as st; w = torch.load('{weights}', weights_only=False); "
            f"st.save_file({{k: v.contiguous() for k, v in w.items() if torch.is_tensor(v)}}, "
            f"'{Path(weights).parent if Path(name).is_dir() else '.'}/model.safetensors', {{'format': 'pt'}})\"")


def _default_feature_extractor(config):
    if config.model_type == "whisper":
        return transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    # The fairseq recipes normalise the waveform for layer-norm (large) models and not for
    # group-norm (base) ones; data2vec-audio has no feat_extract_norm and is layer-norm.
    layer_norm = getattr(config, "feat_extract_norm", "layer") == "layer"
    return transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=layer_norm,
        return_attention_mask=layer_norm,
    )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
