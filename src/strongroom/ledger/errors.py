"""Errors raised by the transparency ledger and its verifiers."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class LedgerError(StrongroomError):
    """Base class for ledger errors."""


class ProofError(LedgerError):
    """An inclusion or consistency proof does not verify."""


class NoteError(LedgerError):
    """A signed note or checkpoint is malformed or its signatures do not verify."""


class EntryError(LedgerError):
    """An entry is malformed, unsigned, forged or of an unknown type: it is never sequenced."""


class SplitViewError(LedgerError):
    """The log showed two histories that cannot both be true (or rolled back): evidence of misbehaviour."""


class StorageError(LedgerError):
    """The ledger's database is unreachable or inconsistent."""
