"""sers: cross-lingual speech emotion recognition by layer anchoring."""

__version__ = "0.1.0"
