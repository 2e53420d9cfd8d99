"""Errors raised while building, comparing or verifying model manifests."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class ManifestError(StrongroomError):
    """A model directory cannot be described (unreadable, escaping symlink, malformed safetensors)."""


class VerificationError(ManifestError):
    """The bytes do not match the expected model identity; the message names the file or tensor."""
