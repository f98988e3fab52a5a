"""The names of the estimator's string options, in a module that imports nothing: the estimator
and the training loop check them, `sers train` offers them, and its --help needs no torch."""

NORMALIZE = ("none", "global", "per-language")   # feature standardisation
CORAL_SCALES = ("relative", "4d2")                # how the CORAL term is scaled
CRITERIA = ("source-dev", "im", "dev", "snd", "bnm", "class-ami", "iwcv")  # label-free scores of a candidate
# λ by bnm among the candidates that read the same layers, then the layers (group setting, anchors
# file) by source-dev (docs/method.md: measured beside the single scores)
STAGED = "bnm+source-dev"
SELECTORS = (STAGED, *CRITERIA)  # what --select takes
ALIGN = ("utterance", "vowel")                    # what the alignment term compares
FEATURES = ("pooled", "frames")                   # what the heads read
GROUP_WEIGHTS = ("mean", "learned", "concat", "per-layer")  # how a group's layers are combined
