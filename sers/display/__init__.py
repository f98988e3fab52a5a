"""Everything drawn or printed: terminal tables and sizes, PNG curves, heatmaps and bars.
Stages call these; nothing here computes a result."""
