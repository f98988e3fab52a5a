"""wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech-SAT: raw waveform in, 50 frames/s out."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

from sers.upstream.base import Upstream, exact_rate


class ConvFrontEndUpstream(Upstream):
    """An encoder with a conv front-end on the raw waveform, batched exactly.

    Why batching is done this way. Zero-padding a batch changes the results for the
    shorter inputs in two places:

    * the conv front-end of group-norm models (``feat_extract_norm == "group"``,
      wav2vec2-base style) normalises each channel over *time*, so padding shifts the
      statistics of every frame; these models are meant to run without an attention
      mask, and then every transformer layer also attends to the padding. On the tiny
      test models a batched output differs from the one-at-a-time output by O(1), the
      size of the features themselves;
    * the positional convolution before the transformer layers reads the padding at the
      end of an utterance; for data2vec-audio (five stacked convs with LayerNorm between
      them) that leaks even with an attention mask.

    So the parts before the transformer layers (conv front-end, positional conv) run on
    each utterance cut to its own length, and the transformer layers run batched with an
    attention mask over the padding frames. Everything else is per frame or masked
    attention, so each result equals running that input alone (the reference: unpadded,
    as in pre-training) up to float rounding, for every family (tests: atol 1e-4;
    measured ~1e-6 in float32). Only the conv front-end, roughly a third of a base
    model's compute and a seventh of a large one's, loses the batch; a single utterance
    is still thousands of frames wide for it.
    """

    padding_policy = ("conv front-end and positional conv run per utterance; transformer layers "
                      "batched with an attention mask over padding frames; padding frames dropped")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        config = self.config
        self.num_layers = config.num_hidden_layers + 1
        self.hidden_size = config.hidden_size
        self.frame_rate = exact_rate(self.sample_rate / math.prod(config.conv_stride))
        receptive_field = 1  # samples one output frame of the conv stack sees
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            receptive_field = (receptive_field - 1) * stride + kernel
        self.min_samples = receptive_field

    def n_frames(self, num_samples: int) -> int:
        # Hidden states come from the encoder layers, before any adapter (wav2vec2 only).
        skip_adapter = {"add_adapter": False} if getattr(self.config, "add_adapter", False) else {}
        frames = self.model._get_feat_extract_output_lengths(int(num_samples), **skip_adapter)
        return max(int(frames), 0)

    def _model_inputs(self, waveforms):
        # The feature extractor's per-utterance normalisation (if the model uses it), unpadded.
        return [
            np.asarray(
                self.feature_extractor(w, sampling_rate=self.sample_rate,
                                       return_tensors="np")["input_values"][0],
                dtype=np.float32,
            )
            for w in waveforms
        ]

    def _forward(self, inputs):
        lengths = [len(x) for x in inputs]
        frames = [self.n_frames(n) for n in lengths]
        batch = torch.zeros(len(inputs), max(lengths))
        attention_mask = torch.zeros(len(inputs), max(lengths), dtype=torch.long)
        for row, x in enumerate(inputs):
            batch[row, : len(x)] = torch.from_numpy(x)
            attention_mask[row, : len(x)] = 1
        with contextlib.ExitStack() as context:
            context.enter_context(warnings.catch_warnings())
            # WavLM's attention (in transformers) mixes a bool padding mask with its float
            # position bias and torch warns on every batch: harmless, and not ours to fix.
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            if len(set(lengths)) > 1:  # inputs of equal length have no padding to leak
                front_end = run_per_row(self.model.feature_extractor, lengths, time_dim=-1)
                pos_conv = run_per_row(self.model.encoder.pos_conv_embed, frames, time_dim=1)
                context.enter_context(front_end)
                context.enter_context(pos_conv)
            output = self.model(
                self.to_device(batch),
                attention_mask=self.to_device(attention_mask),
                output_hidden_states=True,
            )
        layers = self._all_layers(output)
        return [torch.stack([layer[row, :n] for layer in layers]) for row, n in enumerate(frames)]

    def _feature_extractor_settings(self):
        return {"do_normalize": bool(getattr(self.feature_extractor, "do_normalize", False))}

    def _config_summary(self):
        config = self.config
        return {
            "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "feat_extract_norm": getattr(config, "feat_extract_norm", "layer"),
            "do_stable_layer_norm": bool(getattr(config, "do_stable_layer_norm", False)),
            "conv_kernel": list(config.conv_kernel),
            "conv_stride": list(config.conv_stride),
        }


@contextlib.contextmanager
def run_per_row(module: torch.nn.Module, lengths: list[int], time_dim: int):
    """Within the block, ``module`` runs on each batch row cut to its own length.

    ``time_dim`` is the time axis of both input and output (negative counts from the end:
    the conv front-end maps (B, samples) to (B, channels, frames), time_dim=-1). Outputs
    are zero-padded back to a common length. The forward is swapped on this instance
    only, so hooks keep working and the model is unchanged outside the block.
    """
    batched_forward = module.forward
    previous = vars(module).get("forward")  # e.g. an accelerate hook, restored after

    def forward(batch, *args, **kwargs):
        rows = [
            batched_forward(batch[row : row + 1].narrow(time_dim, 0, n), *args, **kwargs)
            for row, n in enumerate(lengths)
        ]
        axis = time_dim % rows[0].dim()
        width = max(out.shape[axis] for out in rows)
        padded = []
        for out in rows:
            shape = list(out.shape)
            shape[axis] = width - out.shape[axis]
            padded.append(torch.cat([out, out.new_zeros(shape)], dim=axis))
        return torch.cat(padded, dim=0)

    module.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous
