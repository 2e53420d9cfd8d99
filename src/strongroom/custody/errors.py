"""Errors raised by the custody service; every refusal changes nothing."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class CustodyError(StrongroomError):
    """A custody request, approval or release was refused."""


class MessageError(CustodyError):
    """A signed custody message is malformed, forged, expired or replayed."""


class PolicyError(CustodyError):
    """The release policy does not hold (yet): the reasons say which rule failed."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("release refused: " + "; ".join(reasons))
        self.reasons = reasons


class ReleaseConflictError(CustodyError):
    """The release was already taken (releases are single-use)."""


class UnavailableError(CustodyError):
    """The ledger, database or key provider is unreachable: fail closed, nothing released."""
