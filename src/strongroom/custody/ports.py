"""What the custody service needs from the ledger, stated as a protocol so the service stays testable."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Protocol

from strongroom.ledger.entries import Entry
from strongroom.signing import Signer


class EventLog(Protocol):
    """Append signed, typed entries durably; read them back, verified, in log order."""

    def append_event(
        self, entry_type: str, body: dict[str, Any], signer: Signer, time: str | None = None
    ) -> dict[str, Any]:
        """Sequence one entry stamped ``time``; returns at least ``{"index": int, "leaf_hash": str}`` once durable."""
        ...

    def scan(self, types: Collection[str] = (), start: int = 0) -> Iterator[tuple[int, Entry]]:
        """Every entry (of ``types``) from ``start`` on, in log order, verified; no cap."""
        ...

    @property
    def size(self) -> int:
        """How many entries the log holds now."""
        ...

    def read(self, index: int) -> Entry:
        """One entry, verified."""
        ...
