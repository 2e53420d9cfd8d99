"""Errors raised by the custody service; every refusal changes nothing.

Each class maps to one HTTP status in ``strongroom.server.errors``; nothing maps by message text.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class CustodyError(StrongroomError):
    """A custody request, approval, administrative change or release was refused."""


class MessageError(CustodyError):
    """A signed custody message is malformed, forged, expired or replayed."""


class NotAuthorisedError(CustodyError):
    """The signers of a message may not do what it asks (not officers, too few of them, wrong party)."""


class PolicyError(CustodyError):
    """The release policy does not hold (yet): the reasons say which rule failed."""

    def __init__(self, reasons: list[str], message: str | None = None) -> None:
        super().__init__(message or "release refused: " + "; ".join(reasons))
        self.reasons = reasons


class NotFoundError(CustodyError):
    """No such request, model or release."""


class AlreadyExistsError(CustodyError):
    """The thing to create exists already (a model id or wrapped key registered twice)."""


class AwaitingSharesError(CustodyError):
    """A split key's release is logged, but fewer custodians than the threshold have delivered their shares."""

    def __init__(self, message: str, delivered: int, threshold: int) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.threshold = threshold


class ReleaseConflictError(CustodyError):
    """The release was already taken (releases are single-use)."""


class UnavailableError(CustodyError):
    """The ledger, database or key provider is unreachable: fail closed, nothing released."""


class UnverifiableLedgerError(UnavailableError):
    """The ledger holds custody entries that do not verify: releases stop until someone looks."""


class UnverifiableEntryError(CustodyError):
    """One ledger entry fails the authority model (wrong writer, missing or bad authorisation)."""
