"""A fitted LayerAnchoringClassifier as one safetensors file: weights, statistics, configuration.

Plain tensors and one JSON metadata entry; nothing is unpickled when a file is read.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from sers.classifiers.data import InputError

WEIGHTS_FORMAT = "sers-layer-anchoring-classifier/1"


def save(model, path) -> None:
    """Write ``model`` (fitted) to ``path``."""
    from safetensors.torch import save_file

    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in model.module_.state_dict().items()}
    for domain, (mean, std) in model.stats_.items():
        tensors[f"stats.{domain}.mean"] = torch.tensor(mean)
        tensors[f"stats.{domain}.std"] = torch.tensor(std)
    spec = {"params": model.get_params(), "classes": model.classes_.tolist(), "layers": model.layers_,
            "branches": model.branches_, "input_dim": model.n_features_in_,
            "speaker_standardised": bool(model.speaker_standardised_)}
    # One metadata key: safetensors writes several in a random order, and the same model
    # should give the same bytes.
    save_file(tensors, str(path), metadata={"sers": json.dumps({"format": WEIGHTS_FORMAT, **spec})})


def load(cls, path, device="cpu"):
    """A ``cls`` (LayerAnchoringClassifier) read from a file :func:`save` wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        spec = json.loads((handle.metadata() or {}).get("sers", "{}"))
        if spec.get("format") != WEIGHTS_FORMAT:
            raise InputError(f"{path}: not a sers classifier weights file")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    model = cls(**{**spec["params"], "device": device})
    model.classes_ = np.asarray(spec["classes"])
    model.layers_, model.n_features_in_ = spec["layers"], spec["input_dim"]
    # files written before speakers= existed were fitted on features as given
    model.speaker_standardised_ = bool(spec.get("speaker_standardised", False))
    model.stats_ = {domain: (tensors[f"stats.{domain}.mean"].numpy(), tensors[f"stats.{domain}.std"].numpy())
                    for domain in ("source", "target")}
    model._build([list(branch) for branch in spec["branches"]])
    model.module_.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
    return model
