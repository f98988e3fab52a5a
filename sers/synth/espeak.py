"""espeak-ng through ctypes: text or SSML in, a waveform and phoneme timings out.

The library and its data (voices, dictionaries) come from the `espeakng-loader`
wheel on PyPI, so no system package is needed:

    from sers.synth.espeak import synthesize
    speech = synthesize('<speak><prosody pitch="+20%">Hello there.</prosody></speak>', "en-us+f2")
    speech.waveform, speech.sample_rate       # float32 in [-1, 1], 22050
    speech.phonemes                           # [Phoneme("h", 0.012), ...]: IPA names, start seconds

libespeak-ng keeps its state (the voice, the callback, the output buffer) in
globals: it is a process-wide singleton, not re-entrant. This module therefore
initialises it once per process, on first use, and serialises every call through
one lock; threads may call `synthesize` freely, and separate processes each get
their own copy of the library.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from sers.errors import SersError

__all__ = ["Phoneme", "Word", "Voice", "Speech", "synthesize", "list_voices", "voice_exists", "is_available",
           "INSTALL_HINT"]

INSTALL_HINT = "pip install espeakng-loader"

# espeak_AUDIO_OUTPUT, options, flags and event types from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_SSML = 0x10
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_EE_OK = 0
_BUFFER_MS = 200
_PUNCTUATION = ".,;:!?¡¿\"'()。，、；：！？“”‘’（）"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte),
                ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    name: str            # IPA, with stress marks ˈ ˌ and length mark ː (espeak sends at most 8 bytes)
    start: float         # seconds from the start of the waveform


@dataclass(frozen=True)
class Word:
    text: str            # the characters of the input text the word covers
    start: float


@dataclass(frozen=True)
class Voice:
    name: str            # e.g. "English (America)"
    language: str        # the code espeak_SetVoiceByName takes, e.g. "en-us", "cmn", "es"
    identifier: str      # its file under espeak-ng-data/voices, e.g. "gmw/en-US"


@dataclass
class Speech:
    waveform: np.ndarray          # float32 mono in [-1, 1]
    sample_rate: int
    phonemes: list[Phoneme]
    words: list[Word]


class _Engine:
    """The one initialised libespeak-ng of this process."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise SersError(f"the espeak engine needs the espeakng-loader package ({INSTALL_HINT})") from None
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise SersError(f"espeakng-loader is installed but its library cannot be loaded ({exc})") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), options)
        if rate <= 0:
            raise SersError(f"espeak-ng could not be initialised with its data at {data_path}")
        self.lib, self.sample_rate = lib, rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, bytes]] = []
        # Keep a reference: ctypes frees a callback whose Python object is collected.
        self._callback = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_voices()

    def _collect(self, samples, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type in (_EVENT_PHONEME, _EVENT_WORD):
                self._events.append((event.type, event.sample, event.text_position, event.length,
                                     bytes(event.id.string) if event.type == _EVENT_PHONEME else b""))
            i += 1
        return 0                  # 0: carry on synthesising

    def _list_voices(self) -> list[Voice]:
        voices = self.lib.espeak_ListVoices(None)
        found, i = [], 0
        while voices[i]:
            voice = voices[i].contents
            # `languages` starts with a priority byte, then the voice's first language code.
            found.append(Voice(voice.name.decode("utf-8", "replace"),
                               (voice.languages or b"?")[1:].decode("ascii", "replace"),
                               voice.identifier.decode("utf-8", "replace")))
            i += 1
        return found

    def synthesize(self, text: str, voice: str, ssml: bool, seed: int) -> Speech:
        self.lib.espeak_ng_SetRandSeed(seed)
        status = self.lib.espeak_SetVoiceByName(voice.encode())
        if status != _EE_OK:
            raise SersError(f"espeak-ng has no voice {voice!r} (e.g. en-us, cmn, de, es, "
                            "with a variant such as +m3 or +f2)")
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, flags, None, None)
        if status != _EE_OK:
            raise SersError(f"espeak-ng could not synthesise {text[:60]!r} (status {status})")
        waveform = (np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks
                    else np.zeros(0, np.float32))
        sr = self.sample_rate
        phonemes = [Phoneme(raw.split(b"\0", 1)[0].decode("utf-8", "replace"), sample / sr)
                    for kind, sample, _, _, raw in self._events if kind == _EVENT_PHONEME]
        word_events = [(sample, position - 1) for kind, sample, position, _, _ in self._events
                       if kind == _EVENT_WORD]
        return Speech(waveform, sr, phonemes, _words(text, word_events, sr))


def _words(text: str, events: list[tuple[int, int]], sample_rate: int) -> list[Word]:
    """A word's text runs from its event's character offset (SSML tags included) to the next
    word's, or to the next tag: espeak's own word length undercounts Mandarin words that its
    dictionary reads as one (城里 is one event of length 1)."""
    words = []
    for i, (sample, first) in enumerate(events):
        last = events[i + 1][1] if i + 1 < len(events) else len(text)
        piece = text[first:last].split("<", 1)[0].strip().strip(_PUNCTUATION)
        words.append(Word(piece, sample / sample_rate))
    return words


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def is_available() -> bool:
    """Whether espeakng-loader can be imported (the library itself is loaded on first use)."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


def list_voices() -> list[Voice]:
    """espeak-ng's voices (one per language or dialect); a variant is added as "+m3", "+f2"."""
    with _lock:
        return list(_get_engine().voices)


def synthesize(text: str, voice: str, ssml: bool = True, seed: int = 0) -> Speech:
    """Speak `text` (SSML unless ssml=False) with `voice`, e.g. "en-us", "cmn+f2", "es+m3".

    `seed` seeds espeak's noise generator. The output also depends on state the library
    keeps from earlier calls in this process (e.g. the phase of its pitch flutter), so the
    same call gives the same samples only at the same point of the same sequence of calls:
    `sers.synth.espeak_corpus` synthesises each language in a fresh process for that reason.
    """
    with _lock:
        return _get_engine().synthesize(text, voice, ssml, seed)
