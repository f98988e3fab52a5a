"""What sers reads before a model runs: audio, manifests, corpus layouts, other toolkits' corpora,
forced alignments (TextGrid, CTM) and vowel maps. Nothing here imports a model, a cache or torch."""
