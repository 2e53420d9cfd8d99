"""The root of Strongroom's exception tree: every error the library raises on purpose derives from it."""

from __future__ import annotations


class StrongroomError(Exception):
    """Base class for every error Strongroom raises deliberately; the CLI prints its message on one line."""
