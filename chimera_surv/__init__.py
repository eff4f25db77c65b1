"""CHIMERA multimodal survival: grand-challenge container and training library."""

__version__ = "0.1.0"
