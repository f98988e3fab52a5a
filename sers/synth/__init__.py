"""Generated multilingual emotional speech corpora, for demos and tests.

Two engines write the same layout. `espeak` (`espeak_corpus`, through the ctypes
wrapper `espeak`): espeak-ng reads real English, Mandarin, Spanish, Finnish and
Turkish sentences (`sentences`) in four emotions made by prosody. `source-filter`, below:

A source-filter synthesiser (glottal pulses with jitter and shimmer through
time-varying formant resonators, noise bursts and fricatives for consonants)
speaks made-up words of two made-up languages, an English-like `en` and a
Mandarin-like tonal `zh`, in four emotions (N, H, A, S) realised through
prosody and voice quality, by speakers with their own vocal tracts and voices.
Every phone boundary is known exactly and written to Praat TextGrids.

    from sers.synth import synthesize_corpus
    manifests = synthesize_corpus("corpus/", languages=("en", "zh"), seed=0)
    # {"en": Path("corpus/en/manifest.csv"), "zh": Path("corpus/zh/manifest.csv")}

Modules: `languages` (inventories, syllables, lexicon), `speakers` (voices and
emotional styles), `utterance` (timing, intonation, control tracks), `voice`
(the source-filter synthesiser), `corpus` (files on disk).
"""
from sers.synth.corpus import MANIFEST_COLUMNS, corpus_summary, synthesize_corpus, synthesize_utterance
from sers.synth.espeak import is_available as espeak_available
from sers.synth.espeak_corpus import ESPEAK_LANGUAGES, synthesize_espeak_corpus
from sers.synth.languages import LANGUAGES, vowel_classes
from sers.synth.speakers import EMOTIONS

__all__ = ["synthesize_corpus", "synthesize_espeak_corpus", "synthesize_utterance", "corpus_summary",
           "choose_engine", "ENGINES", "MANIFEST_COLUMNS", "LANGUAGES", "ESPEAK_LANGUAGES", "EMOTIONS", "vowel_classes"]

ENGINES = ("auto", "espeak", "source-filter")  # auto: espeak when espeakng-loader is installed


def choose_engine(engine: str = "auto") -> tuple[str, str]:
    """(engine that will run, why): auto means espeak when espeakng-loader is installed."""
    if engine == "source-filter":
        return engine, "asked for"
    if espeak_available():
        return "espeak", "asked for" if engine == "espeak" else "espeakng-loader is installed"
    if engine == "espeak":
        from sers.errors import SersError
        from sers.synth.espeak import INSTALL_HINT
        raise SersError(f"--engine espeak needs the espeakng-loader package ({INSTALL_HINT})")
    return "source-filter", "espeakng-loader is not installed; pip install espeakng-loader for real speech"
