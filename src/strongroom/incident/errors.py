"""Errors raised by the incident package; each is a ``StrongroomError``, so the CLI prints one line."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class IncidentError(StrongroomError):
    """Base class for incident-response errors."""


class PlaybookError(IncidentError):
    """A playbook that is not the CACAO 2.0 subset Strongroom executes, or an acknowledgement it refuses."""


class ResealError(IncidentError):
    """Re-sealing under a fresh data key failed; nothing was left at the output path."""


class RetireError(IncidentError):
    """A key-provider retirement was refused (it would strand a key still in service) or did not take."""


class FingerprintError(IncidentError):
    """A fingerprint could not be applied or a leaked copy could not be compared."""


class TimelineError(IncidentError):
    """The entries given cannot make a timeline (out of order, or a window that makes no sense)."""
