"""What every wrapped encoder offers: checks, the inference context, metadata."""

from __future__ import annotations

import abc
import contextlib

import numpy as np
import torch
import transformers

from sers.errors import SersError
from sers.upstream.options import DTYPES as DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}  # name -> torch dtype


class Upstream(abc.ABC):
    """A loaded encoder; the family subclasses say how waveforms become model inputs.

    Attributes: model_id, revision, family, num_layers (hidden states, embedding output
    included), hidden_size, sample_rate, frame_rate (frames per second), min_samples,
    max_window_seconds (None unless the model reads fixed windows), model, device, dtype.
    """

    num_layers: int
    hidden_size: int
    frame_rate: int
    min_samples: int
    max_window_seconds: float | None = None
    padding_policy = ""  # one line for describe(): how padding is kept out of the results
    whisper_input: str | None = None  # Whisper only: "padded" or "trimmed" (sers.upstream.whisper)

    def __init__(self, *, model, feature_extractor, feature_extractor_source, model_id,
                 revision, device, dtype):
        self.model_id = model_id
        self.revision = revision
        self.config = model.config
        self.family = self.config.model_type
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        self.feature_extractor_source = feature_extractor_source
        self.device = device
        self.dtype = dtype
        self.sample_rate = int(feature_extractor.sampling_rate)

    @abc.abstractmethod
    def n_frames(self, num_samples: int) -> int:
        """Number of output frames covering real audio for an input of that many samples."""

    def processed_seconds(self, num_samples: int) -> float:
        """Seconds of input the forward pass computes over (what a batch budget should count)."""
        return num_samples / self.sample_rate

    def check_audio(self, waveform) -> np.ndarray:
        """The waveform as 1-D float32, or SersError saying why the model cannot take it."""
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise SersError(f"audio must be mono (1-D), got an array of shape {waveform.shape}")
        if len(waveform) < self.min_samples:
            raise SersError(
                f"audio too short: {len(waveform)} samples, "
                f"the model needs at least {self.min_samples}"
            )
        if not np.isfinite(waveform).all():
            raise SersError("audio contains NaN or infinite samples")
        return waveform

    def hidden_states(self, waveforms) -> list[torch.Tensor]:
        """Every hidden state of each waveform (mono, at ``sample_rate``), in one forward pass.

        Returns one float32 CPU tensor per waveform, shape
        ``(num_layers, n_frames(len(w)), hidden_size)``, padding frames removed.
        Raises SersError if any waveform fails :meth:`check_audio`; callers that record
        such inputs one by one call ``check_audio`` on each before forming the batch.
        """
        waveforms = [self.check_audio(w) for w in waveforms]
        if not waveforms:
            return []
        with torch.inference_mode():
            inputs = self._model_inputs(waveforms)  # feature extraction stays float32
            with self._autocast():
                per_input = self._forward(inputs)
        return [states.float().cpu() for states in per_input]

    @abc.abstractmethod
    def _model_inputs(self, waveforms: list[np.ndarray]):
        """What the model takes, built from the waveforms on the CPU."""

    @abc.abstractmethod
    def _forward(self, inputs) -> list[torch.Tensor]:
        """One forward pass; one (num_layers, frames, hidden) tensor per waveform."""

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """On a GPU through pinned memory, so that the copy does not wait for the work queued before it."""
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.dtype])

    def _all_layers(self, output) -> list[torch.Tensor]:
        """The model's hidden states, the last one being the encoder output.

        transformers 5 returns, for pre-LN ("stable layer norm") wav2vec2-family models,
        the last layer *before* the encoder's final LayerNorm; transformers 4, and Whisper
        in both, return it after. We take the encoder output (``last_hidden_state``) so
        the cache does not depend on the transformers version and "last layer" means what
        users of ``model(x).last_hidden_state`` expect.
        """
        layers = list(output.hidden_states)
        if len(layers) != self.num_layers:
            raise RuntimeError(f"{self.model_id} returned {len(layers)} hidden states, "
                               f"expected {self.num_layers}")
        if output.last_hidden_state.shape == layers[-1].shape:  # not when an adapter shortens it
            layers[-1] = output.last_hidden_state
        return layers

    def describe(self) -> dict:
        """JSON-able metadata for the cache attributes."""
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "resolved_commit": getattr(self.config, "_commit_hash", None),
            "family": self.family,
            "model_class": type(self.model).__name__,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "min_samples": self.min_samples,
            "max_window_seconds": self.max_window_seconds,
            "dtype": self.dtype,
            "autocast": self.dtype != "float32",
            # transformers' choice: sdpa (PyTorch's fused attention) where the family supports it
            "attn_implementation": getattr(self.config, "_attn_implementation", None),
            "last_layer": "encoder output (last_hidden_state)",
            "padding": self.padding_policy,
            "feature_extractor": {
                "class": type(self.feature_extractor).__name__,
                "source": self.feature_extractor_source,
                **self._feature_extractor_settings(),
            },
            "config": self._config_summary(),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            # Where the weights came from when not a transformers folder (CTranslate2 model.bin digest).
            "source": getattr(self, "source", {"format": "transformers"}),
        }

    def _feature_extractor_settings(self) -> dict:
        return {}

    def _config_summary(self) -> dict:
        return {}

    def __repr__(self):
        return (f"{type(self).__name__}({self.model_id!r}, family={self.family}, "
                f"layers={self.num_layers}, hidden={self.hidden_size}, dtype={self.dtype})")


def exact_rate(rate: float):
    """An int when the rate is whole (50, not 50.0), for readable metadata."""
    return int(rate) if float(rate).is_integer() else rate
