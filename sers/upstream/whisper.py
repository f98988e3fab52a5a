"""The Whisper encoder on log-mel features, in 30 s windows."""

from __future__ import annotations

import torch

from sers.errors import SersError
from sers.upstream.base import Upstream, exact_rate


class WhisperUpstream(Upstream):
    """Whisper's encoder; frames beyond the audio are dropped, long audio is windowed.

    The encoder only accepts exactly 30 s of log-mel frames (3000 mel frames, 1500 output
    frames), so every input is padded to 30 s, as Whisper was trained, and only the first
    ceil(n_samples / 320) output frames, the ones covering real audio, are kept. Longer
    audio is cut at 30 s boundaries; each window is padded and encoded on its own and the
    kept frames are concatenated. All windows of all inputs of a call go through the
    encoder as one batch; windows are independent, so batching does not change results.
    A batch costs 30 s of compute per window however short the audio:
    ``processed_seconds`` says so for batch budgets.
    """

    padding_policy = ("each input cut into 30 s windows, each window padded to 30 s; only frames "
                      "covering real audio kept, windows concatenated")

    def __init__(self, *, model, **kwargs):
        # AutoModel gives a WhisperModel, also from a folder saved by
        # WhisperForConditionalGeneration; only its encoder is kept, the decoder is let go.
        super().__init__(model=model.encoder, **kwargs)
        config, encoder, extractor = self.config, self.model, self.feature_extractor
        if extractor.feature_size != config.num_mel_bins:
            raise SersError(
                f"{self.model_id}: the feature extractor gives {extractor.feature_size} mel bins, "
                f"the encoder expects {config.num_mel_bins}"
            )
        self.num_layers = config.encoder_layers + 1
        self.hidden_size = config.d_model
        strides = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.samples_per_frame = extractor.hop_length * strides
        self.frame_rate = exact_rate(self.sample_rate / self.samples_per_frame)
        self.window_samples = config.max_source_positions * self.samples_per_frame
        self.max_window_seconds = self.window_samples / self.sample_rate
        # One STFT window of real audio (25 ms), the same floor as the wav2vec2 family.
        self.min_samples = extractor.n_fft

    def n_frames(self, num_samples: int) -> int:
        # Windows hold a whole number of frames, so the per-window ceilings add up to this.
        return -(-int(num_samples) // self.samples_per_frame)

    def processed_seconds(self, num_samples: int) -> float:
        windows = -(-int(num_samples) // self.window_samples)
        return windows * self.max_window_seconds

    def _model_inputs(self, waveforms):
        """Log-mel features of every window, with (input index, frames to keep) per window."""
        windows, owners = [], []
        for index, waveform in enumerate(waveforms):
            for start in range(0, len(waveform), self.window_samples):
                windows.append(waveform[start : start + self.window_samples])
                owners.append((index, self.n_frames(len(windows[-1]))))
        features = self.feature_extractor(
            windows,
            sampling_rate=self.sample_rate,
            padding="max_length",
            max_length=self.window_samples,
            return_tensors="pt",
        )["input_features"]
        return features, owners, len(waveforms)

    def _forward(self, inputs):
        features, owners, count = inputs
        output = self.model(features.to(self.device), output_hidden_states=True)
        layers = self._all_layers(output)
        kept = [[] for _ in range(count)]
        for row, (owner, n) in enumerate(owners):
            kept[owner].append(torch.stack([layer[row, :n] for layer in layers]))
        return [torch.cat(parts, dim=1) for parts in kept]

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
