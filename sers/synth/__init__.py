"""A generated bilingual emotional speech corpus, for demos and tests.

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
from sers.synth.languages import LANGUAGES, vowel_classes
from sers.synth.speakers import EMOTIONS

__all__ = ["synthesize_corpus", "synthesize_utterance", "corpus_summary", "MANIFEST_COLUMNS",
           "LANGUAGES", "EMOTIONS", "vowel_classes"]
