"""Whisper models in CTranslate2 form (faster-whisper, WhisperX), run through transformers.

A CTranslate2 model folder holds ``model.bin`` (every weight, see ``binary``), a
``config.json`` (suppressed tokens, language ids, alignment heads) and the vocabulary.
``load_whisper`` reads it with numpy alone and returns transformers'
``WhisperForConditionalGeneration`` with the same weights (float16/bfloat16 widened,
int8/int16 dequantised to float32), so sers extracts from it exactly as from a
transformers folder; ``convert`` writes that transformers folder for reuse.

    >>> from sers import ct2
    >>> ct2.is_ctranslate2_whisper("faster-whisper-tiny.en")
    True
    >>> model, feature_extractor, info = ct2.load_whisper("faster-whisper-tiny.en")
"""

from __future__ import annotations

import json
from pathlib import Path

from sers.atomic import refuse_existing
from sers.errors import SersError
from sers.jsonfile import read_json

from .binary import ModelBin, file_sha256, float_weights, read_header, read_model_bin, write_model_bin
from .packaged import whisper_base
from .vocabulary import decode_tokens, read_vocabulary

__all__ = [
    "is_ctranslate2_model", "is_ctranslate2_whisper", "load_whisper", "convert",
    "read_model_bin", "write_model_bin", "read_vocabulary", "decode_tokens", "describe", "whisper_base",
]

WHISPER_SPEC = "WhisperSpec"
WHISPER_SPEC_REVISION = 3  # the newest WhisperSpec layout CTranslate2 writes (whisper_spec.py)


def _header(path):
    model_bin = Path(path) / "model.bin"
    if not model_bin.is_file():
        return None
    try:
        return read_header(model_bin)
    except (SersError, OSError):
        return None


def is_ctranslate2_model(path) -> bool:
    """A folder with a model.bin that starts like a CTranslate2 model (any spec)."""
    return _header(path) is not None


def is_ctranslate2_whisper(path) -> bool:
    """A folder with a model.bin whose spec is WhisperSpec (reads only the header)."""
    header = _header(path)
    return header is not None and header[1] == WHISPER_SPEC


def weights_dtype(model_bin: ModelBin) -> str:
    """CTranslate2's name for how the weights are stored: float16, int8_float16, ...

    As CTranslate2's ``infer_compute_type``: the type of the matrix weights, then for int8
    the type of the other float variables (biases, norms, convolutions, positions).
    """
    matrix, other = set(), set()
    for name, dtype in model_bin.dtypes.items():
        if model_bin.variables[name].ndim == 0 or name.endswith("_scale"):
            continue
        (matrix if name.endswith("weight") and "conv" not in name else other).add(dtype)
    matrix_type = "+".join(sorted(matrix)) or "float32"
    if matrix_type == "int8":
        return "int8_" + ("+".join(sorted(other)) or "float32")
    return matrix_type


def _read_ct2_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    return read_json(path)


def load_whisper(path):
    """(WhisperForConditionalGeneration, WhisperFeatureExtractor, info) from a CTranslate2 folder.

    ``info``: source_format ("ctranslate2"), source_path, model_bin_sha256, spec,
    spec_revision, binary_version, weights_dtype (as stored), architecture (the
    WhisperConfig fields read off the variables). The model is float32, in eval mode.
    """
    from . import whisper

    folder = Path(path)
    bin_path = folder / "model.bin"
    if not bin_path.is_file():
        raise SersError(f"{folder}: no model.bin; not a CTranslate2 model folder")
    model_bin = read_model_bin(bin_path)
    if model_bin.spec_name != WHISPER_SPEC:
        raise SersError(
            f"{bin_path}: CTranslate2 spec {model_bin.spec_name or '(none)'!r} is not a Whisper model "
            f"(expected {WHISPER_SPEC})"
        )
    if model_bin.spec_revision > WHISPER_SPEC_REVISION:
        raise SersError(
            f"{bin_path}: {WHISPER_SPEC} revision {model_bin.spec_revision} is newer than this reader "
            f"knows ({WHISPER_SPEC_REVISION})"
        )
    weights = float_weights(model_bin)
    arch = whisper.architecture(model_bin, weights)
    tensors, tied = whisper.state_dict(weights, arch, bin_path)
    vocabulary = read_vocabulary(folder)
    if vocabulary is None:  # CTranslate2 refuses such a folder too
        raise SersError(f"{folder}: no vocabulary.json or vocabulary.txt beside model.bin")
    if len(vocabulary) != arch["vocab_size"]:
        raise SersError(
            f"{folder}: the vocabulary has {len(vocabulary)} tokens, the embeddings {arch['vocab_size']}"
        )
    ct2_config = _read_ct2_config(folder)
    ids = whisper.token_ids(vocabulary, folder)
    model = whisper.build_model(arch, tensors, tied, ids)
    model.generation_config = whisper.generation_config(model.config, ids, vocabulary, ct2_config)
    info = {
        "source_format": "ctranslate2",
        "source_path": str(folder.resolve()),
        "model_bin_sha256": file_sha256(bin_path),
        "spec": model_bin.spec_name,
        "spec_revision": model_bin.spec_revision,
        "binary_version": model_bin.binary_version,
        "weights_dtype": weights_dtype(model_bin),
        "architecture": arch,
    }
    return model, whisper.feature_extractor(folder, arch), info


def describe(info: dict) -> str:
    """One line naming the architecture found, for the CLI and logs."""
    a = info["architecture"]
    return (
        f"Whisper from {info['spec']} rev {info['spec_revision']}, {info['weights_dtype']} weights: "
        f"{a['encoder_layers']} encoder + {a['decoder_layers']} decoder layers, d_model {a['d_model']}, "
        f"{a['encoder_attention_heads']}/{a['decoder_attention_heads']} heads, "
        f"ffn {a['encoder_ffn_dim']}, {a['num_mel_bins']} mel bins, vocabulary {a['vocab_size']}, "
        f"positions {a['max_source_positions']}/{a['max_target_positions']}"
    )


def convert(path, out_dir, report=None, overwrite: bool = False):
    """Write a transformers folder (weights, config, generation config, feature extractor,
    tokenizer when the CTranslate2 folder has a tokenizer.json) and ``sers_source.json``
    (the ``info`` of ``load_whisper``). ``report``, if given, receives one-line messages.
    A folder that already holds a converted model is replaced only with ``overwrite``.
    """
    folder, out_dir = Path(path), Path(out_dir)
    if out_dir.resolve() == folder.resolve():
        raise SersError(f"{out_dir}: write the converted model to another folder than the CTranslate2 one")
    refuse_existing(out_dir / "config.json", overwrite=overwrite)
    model, extractor, info = load_whisper(folder)
    if report:
        report(describe(info))
    import transformers

    transformers.logging.disable_progress_bar()  # "Writing model shards" for one file: noise in a log
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    extractor.save_pretrained(out_dir)
    if (folder / "tokenizer.json").is_file():
        from transformers import WhisperTokenizer

        WhisperTokenizer.from_pretrained(str(folder)).save_pretrained(out_dir)
    (out_dir / "sers_source.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if report:
        report(f"wrote {out_dir}")
    return out_dir
