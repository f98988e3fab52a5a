"""Pretrained speech encoders from Hugging Face: every hidden state of each utterance.

``load_upstream(model_id_or_path)`` returns an :class:`Upstream` whose
``hidden_states(waveforms)`` gives, per waveform, a float32 CPU tensor of shape
``(num_layers, n_frames, hidden_size)``: layer 0 is the embedding output (the input to
the first transformer layer), layer ``num_layers - 1`` the encoder output
(``last_hidden_state``, which includes the encoder's final LayerNorm where it has one:
pre-LN "stable layer norm" models and Whisper). Frames that only cover padding are
removed, so pooling over the returned frames pools over real audio only.

Two kinds of encoder:

* wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech-SAT: raw waveform, conv front-end,
  50 frames/s; batching is exact (:mod:`sers.upstream.conv` says how).
* Whisper, encoder only: log-mel input in 30 s windows, each padded to 30 s or trimmed to
  the audio (``whisper_input``), 50 frames/s (:mod:`sers.upstream.whisper`).

Wrappers compute and never write files.

Names are imported on first use, so that the option names in :mod:`sers.upstream.options`
(read by ``sers extract --help``) load without torch or transformers.
"""
from sers.lazy import lazy_names

_WHERE = {"load_upstream": "loading", "FAMILIES": "loading", "CONV_FAMILIES": "loading", "Upstream": "base",
          "DTYPES": "base", "WHISPER_INPUTS": "options"}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, _WHERE)
