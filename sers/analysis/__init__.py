"""Layer-similarity measures on plain arrays (no cache, no model): what `sers similarity` computes
and `sers anchor` ranks."""
