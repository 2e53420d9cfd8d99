"""Strongroom: verifiable custody of frontier AI model weights."""

__version__ = "0.1.0"
