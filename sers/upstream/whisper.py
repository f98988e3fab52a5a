"""The Whisper encoder on log-mel features: 30 s windows, padded (as trained) or trimmed."""

from __future__ import annotations

import numpy as np
import torch
from transformers.masking_utils import create_bidirectional_mask

from sers.errors import SersError
from sers.upstream.base import Upstream, exact_rate
from sers.upstream.options import WHISPER_INPUTS


class WhisperUpstream(Upstream):
    """Whisper's encoder; frames beyond the audio are dropped, long audio is windowed.

    Audio is cut at 30 s boundaries (the encoder's 1500 positions); the kept frames of the
    windows are concatenated. How each window reaches the encoder is ``whisper_input``:

    * ``padded`` (default): every window padded to 30 s of log-mel frames, as Whisper was
      trained and as Hugging Face runs it; the first ceil(n_samples / 320) output frames,
      the ones covering real audio, are kept. Every window costs 30 s of compute however
      short the audio (``processed_seconds`` says so for batch budgets).
    * ``trimmed``: only the mel frames covering the audio go in, with the positional
      embeddings of those positions; a 3 s window costs a tenth of a padded one. The
      features differ from padded ones (real frames no longer attend to trailing
      silence); a 30 s window is the same either way. Windows of different lengths are
      batched with an attention mask (see :meth:`_encode_trimmed`), so a result equals
      encoding that window alone up to float rounding.
    """

    def __init__(self, *, model, whisper_input: str | None = "trimmed", **kwargs):
        whisper_input = whisper_input or "trimmed"  # None: the default, see load_upstream
        if whisper_input not in WHISPER_INPUTS:
            raise SersError(f"--whisper-input {whisper_input!r}: choose {' or '.join(WHISPER_INPUTS)}")
        # AutoModel gives a WhisperModel, also from a folder saved by
        # WhisperForConditionalGeneration; only its encoder is kept, the decoder is let go.
        super().__init__(model=model.encoder, **kwargs)
        config, encoder, extractor = self.config, self.model, self.feature_extractor
        if extractor.feature_size != config.num_mel_bins:
            raise SersError(
                f"{self.model_id}: the feature extractor gives {extractor.feature_size} mel bins, "
                f"the encoder expects {config.num_mel_bins}"
            )
        self.whisper_input = whisper_input
        self.padding_policy = (
            "each input cut into 30 s windows, each window " +
            ("padded to 30 s" if whisper_input == "padded" else
             "trimmed to the mel frames covering it (batched with an attention mask)") +
            "; only frames covering real audio kept, windows concatenated")
        self.num_layers = config.encoder_layers + 1
        self.hidden_size = config.d_model
        self.mel_per_frame = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.samples_per_frame = extractor.hop_length * self.mel_per_frame
        self.frame_rate = exact_rate(self.sample_rate / self.samples_per_frame)
        self.window_samples = config.max_source_positions * self.samples_per_frame
        self.max_window_seconds = self.window_samples / self.sample_rate
        # One STFT window of real audio (25 ms), the same floor as the wav2vec2 family.
        self.min_samples = extractor.n_fft

    def n_frames(self, num_samples: int) -> int:
        # Windows hold a whole number of frames, so the per-window ceilings add up to this.
        return -(-int(num_samples) // self.samples_per_frame)

    def processed_seconds(self, num_samples: int) -> float:
        if self.whisper_input == "trimmed":
            return self.n_frames(num_samples) / self.frame_rate
        windows = -(-int(num_samples) // self.window_samples)
        return windows * self.max_window_seconds

    def _windows(self, waveforms):
        """Every <= 30 s window, with (input index, output frames to keep) per window."""
        windows, owners = [], []
        for index, waveform in enumerate(waveforms):
            for start in range(0, len(waveform), self.window_samples):
                windows.append(waveform[start : start + self.window_samples])
                owners.append((index, self.n_frames(len(windows[-1]))))
        return windows, owners

    def _model_inputs(self, waveforms):
        """Log-mel features of every window, with (input index, frames to keep) per window."""
        windows, owners = self._windows(waveforms)
        if self.whisper_input == "padded":
            length = self.window_samples
        else:
            # Each window is zero-padded, as the 30 s padding does, to its whole frames plus one
            # STFT window (at most 30 s): every kept mel frame then equals the padded input's,
            # whatever else is in the batch; _encode_trimmed cuts off the frames past the window.
            extractor = self.feature_extractor
            windows = [np.pad(w, (0, min(n * self.samples_per_frame + extractor.n_fft, self.window_samples)
                                  - len(w)), constant_values=extractor.padding_value)
                       for w, (_, n) in zip(windows, owners)]
            length = max(len(w) for w in windows)
        features = self.feature_extractor(
            windows,
            sampling_rate=self.sample_rate,
            padding="max_length",
            max_length=length,
            return_tensors="pt",
        )["input_features"]
        return features, owners, len(waveforms)

    def _forward(self, inputs):
        features, owners, count = inputs
        features = self.to_device(features)
        if self.whisper_input == "padded":
            layers = self._all_layers(self.model(features, output_hidden_states=True))
        else:
            layers = self._encode_trimmed(features, [n for _, n in owners])
        kept = [[] for _ in range(count)]
        for row, (owner, n) in enumerate(owners):
            kept[owner].append(torch.stack([layer[row, :n] for layer in layers]))
        return [torch.cat(parts, dim=1) for parts in kept]

    def _encode_trimmed(self, features: torch.Tensor, frames: list[int]) -> list[torch.Tensor]:
        """Every layer's (windows, max(frames), D) hidden states, the encoder run on ``frames``
        output frames of each window (WhisperEncoder.forward, without its 30 s requirement).

        Exactness in a batch: row i's mel input is zeroed past its 2 * frames[i] mel frames.
        The convolutions (kernel 3, padding 1, conv2 of stride 2) then see, for every kept
        output frame, the same values as alone: the zeros they read past the end are
        conv1's own zero padding. The transformer layers get a mask hiding the padding
        frames as keys; everything else is per frame. The padding frames' own outputs are
        garbage and are cut off by the caller.
        """
        encoder = self.model
        width = max(frames)
        features = features[:, :, : width * self.mel_per_frame].clone()
        valid = torch.arange(width, device=features.device)[None] < torch.tensor(frames, device=features.device)[:, None]
        features *= valid.repeat_interleave(self.mel_per_frame, dim=1)[:, None, :]
        hidden = torch.nn.functional.gelu(encoder.conv1(features))
        hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
        hidden = hidden + encoder.embed_positions.weight[:width]
        mask = create_bidirectional_mask(encoder.config, hidden, valid.long()) if min(frames) < width else None
        states = [hidden]
        for layer in encoder.layers:
            hidden = layer(hidden, mask)
            states.append(hidden)
        states[-1] = encoder.layer_norm(hidden)  # the encoder output, as _all_layers keeps it
        return states

    def describe(self):
        return {**super().describe(), "whisper_input": self.whisper_input}

    def _feature_extractor_settings(self):
        extractor = self.feature_extractor
        return {"feature_size": extractor.feature_size, "hop_length": extractor.hop_length,
                "n_fft": extractor.n_fft}

    def _config_summary(self):
        config = self.config
        return {
            "encoder_layers": config.encoder_layers,
            "d_model": config.d_model,
            "num_mel_bins": config.num_mel_bins,
            "max_source_positions": config.max_source_positions,
        }
