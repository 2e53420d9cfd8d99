"""Reading the ledger for an investigation: every entry, checked against a witnessed checkpoint first.

``witnessed_entries`` runs the auditor's check (``strongroom.ledger.client.verify_log`` with the full
history): the checkpoint is signed by the log's key and cosigned by at least ``min_witnesses`` of the named
witnesses, it extends the state the investigator saved before (no rollback, no split view), and the entries
served hash to its root. Only then are the entries handed to the timeline; custody replay says which of
them it refuses (``strongroom.custody.audit``), and the timeline flags those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.custody.audit import audit_custody
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.entries import Entry
from strongroom.ledger.note import NoteVerifier


def witnessed_entries(
    client: LedgerClient,
    state_path: Path,
    *,
    log_vkey: str | None = None,
    witnesses: list[NoteVerifier] | None = None,
    min_witnesses: int = 1,
) -> tuple[list[tuple[int, Entry]], dict[str, Any]]:
    """The whole log, in order, after it was checked against a witnessed checkpoint; and what was checked."""
    report = verify_log(
        client, state_path, log_vkey=log_vkey, witnesses=witnesses, min_witnesses=min_witnesses, full=True
    )
    checked = {
        "witnessed": bool(report.witnesses),
        "witnesses": report.witnesses,
        "size": report.size,
        "root": report.root,
        "origin": report.origin,
    }
    return list(enumerate(report.entries)), checked


def refused_by_replay(entries: list[tuple[int, Entry]]) -> list[int]:
    """The indices custody replay refuses (the same decision code as the live gate)."""
    return [p.index for p in audit_custody(entries).problems]
