"""The names of the stages' string options, in a module that imports nothing, so that the CLI's
--help lists them without loading numpy, torch or a model."""

LEVELS = ("utterance", "segment")        # similarity: pooled utterances or vowel segments
STRATEGIES = ("both", "topk", "group")   # anchor: single layers and groups, single layers, contiguous groups
BACKENDS = ("loky", "dask", "ray")       # joblib back-ends of parallel training runs
STATS_CHOICES = ("target", "source", "cache")  # evaluate: whose standardisation statistics
SPEAKER_NORMS = ("auto", "on", "off")  # train, similarity: standardise each speaker by its own statistics
