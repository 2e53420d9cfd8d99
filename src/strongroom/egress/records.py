"""Egress entries on the ledger: what the gateway writes, and how it reads its last word back at start.

Three entry types (body fields; the required ones are in ``strongroom.ledger.entries.SCHEMAS``):

- ``egress.checkpoint``, one per host per interval: ``host``, ``models``, ``period_start`` (time text),
  ``period_seconds``, ``interval_seconds``, ``bytes_used`` (the gateway's count this period),
  ``budget_bytes``, ``quota_bytes`` (the kernel quota installed, 0 if none), ``kernel_used_bytes``,
  ``rules_installed``, ``rules_digest`` (SHA-256 of ``nft -s list table``, or ``none``), ``exhausted``,
  ``tightened``, ``meters`` (``gateway``, ``kernel``, ``reconcile``), ``detector`` (its state),
  ``final`` (written at a clean stop or at the end of a period).
- ``egress.alarm``, one per model the host holds: ``host``, ``model_id``, ``alarm_id`` (hex, the same for
  every model of one alarm), ``kind`` (``meter-gap``, ``anomaly``, ``rules-missing``, ``rules-changed``,
  ``counters-reset``), ``detail``.
- ``egress.exhausted``, one per model the host holds, once per period and meter: ``host``, ``model_id``,
  ``period_start``, ``meter`` (``gateway`` or ``kernel``), ``used_bytes``, ``budget_bytes``.

The gateway signs with its own key, and the ledger accepts it as an appender allowed exactly these types
(``DATA/appenders/NAME.pub`` and ``NAME.types``, see ``appender_files``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import Entry, build_entry
from strongroom.signing import SigningKey, Verifier

CHECKPOINT = "egress.checkpoint"
ALARM = "egress.alarm"
EXHAUSTED = "egress.exhausted"
TYPES = (CHECKPOINT, ALARM, EXHAUSTED)
ALARM_KINDS = ("meter-gap", "anomaly", "rules-missing", "rules-changed", "counters-reset")


def time_text(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def new_alarm_id(host_id: str, kind: str) -> str:
    return hashlib.sha256(f"{host_id}\n{kind}\n{secrets.token_hex(16)}".encode()).hexdigest()[:32]


def appender_files(data_dir: Path, name: str, verifier: Verifier) -> None:
    """Allow ``verifier``'s key to append egress entries to the ledger whose data directory is ``data_dir``."""
    folder = data_dir / "appenders"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / f"{name}.pub").write_bytes(verifier.pem())
    (folder / f"{name}.types").write_text(" ".join(TYPES) + "\n")


class EgressLedger:
    """Appends signed egress entries over HTTP and reads back the ones this signer wrote."""

    def __init__(self, url: str, signer: SigningKey, timeout: float = 10.0) -> None:
        self.client = LedgerClient(url, timeout=timeout)
        self.signer = signer

    def append(self, entry_type: str, body: dict[str, Any], when: float | None = None) -> Entry:
        entry = build_entry(entry_type, body, self.signer, time_text(when) if when is not None else None)
        self.client.append(entry.raw)
        return entry

    def append_many(self, items: Iterable[tuple[str, dict[str, Any]]], when: float | None = None) -> list[Entry]:
        stamp = time_text(when) if when is not None else None
        entries = [build_entry(t, b, self.signer, stamp) for t, b in items]
        if entries:
            self.client.append_bundle([e.raw for e in entries])
        return entries

    def since(self, entry_type: str, start: float, signer: str | None = None) -> list[Entry]:
        """Verified entries of ``entry_type`` written at or after ``start``, by ``signer`` (default: us)."""
        wanted = signer or self.signer.key_id
        found = self.client.query(type=entry_type, since=time_text(start), signer=wanted)
        return [e for _, e in found if e.signer == wanted]

    def close(self) -> None:
        self.client.close()


def last_checkpoint(entries: Iterable[Entry], host_id: str, period_start: float) -> dict[str, Any] | None:
    """The body of the last checkpoint ``host_id`` wrote in the period starting at ``period_start``."""
    found = None
    wanted = time_text(period_start)
    for entry in entries:
        if entry.type == CHECKPOINT and entry.body.get("host") == host_id and entry.body.get("period_start") == wanted:
            found = entry.body
    return found
