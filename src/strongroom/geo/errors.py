"""Errors of the location package; every one is a StrongroomError, so the CLI prints it on one line."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class GeoError(StrongroomError):
    """Base class for location verification errors."""


class GeoDataError(GeoError):
    """Country boundaries are missing, malformed, or not the data a statement was made with."""


class LandmarkError(GeoError):
    """A landmark record is malformed, unknown, retired or duplicated."""


class ProtocolError(GeoError):
    """A challenge, response or report is malformed, for someone else, or out of its epoch."""


class ForeignKeyError(ProtocolError):
    """An answer was signed by a key other than the host's enrolled one."""


class ReplayError(ProtocolError):
    """A nonce was answered or reported twice, or an answer names a nonce that was never sent."""


class MeasurementError(GeoError):
    """Measuring a host failed: unreachable landmark, timeouts, too few samples."""


class CommitmentError(GeoError):
    """An opening does not match the commitment in a statement."""


class AuditMismatchError(GeoError):
    """Recomputing a statement from its opening gives a different verdict."""
