"""What the custody service needs from the ledger, stated as a protocol so the service stays testable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from strongroom.signing import Signer


class EventLog(Protocol):
    """Append signed, typed entries durably; replay them in log order."""

    def append_event(self, entry_type: str, body: dict[str, Any], signer: Signer) -> dict[str, Any]:
        """Sequence one entry; returns at least ``{"index": int, "leaf_hash": str}`` once it is durable."""
        ...

    def events(self, entry_type: str) -> Iterator[tuple[int, dict[str, Any], str]]:
        """Every entry of one type in log order as (index, body, signer key id)."""
        ...
