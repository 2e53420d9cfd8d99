"""The incident commands' way to custody and the ledger over HTTP (one server serves both).

``RemotePort`` rebuilds custody's state from the ledger with the library's own replay (so the responder's
tool sees what the gate sees), submits officers' changes, writes egress alarms with the responder's
appender key (allowed ``egress.alarm`` only) and sends step acknowledgements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.custody import admin
from strongroom.custody.client import CustodyClient
from strongroom.custody.protocol import new_step_ack
from strongroom.custody.state import CustodyState, replay
from strongroom.egress.records import ALARM
from strongroom.incident.contain import ALARM_KIND
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import Entry, build_entry, parse_entry
from strongroom.ledger.note import parse_note
from strongroom.signing import SigningKey, Verifier

RESPONDER_TYPES = (ALARM,)


def responder_appender(data_dir: Path, name: str, verifier: Verifier) -> None:
    """Allow the incident responder's key to append ``egress.alarm`` entries (nothing else)."""
    folder = data_dir / "appenders"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / f"{name}.pub").write_bytes(verifier.pem())
    (folder / f"{name}.types").write_text(" ".join(RESPONDER_TYPES) + "\n")


def ledger_entries(client: LedgerClient) -> list[tuple[int, Entry]]:
    """Every entry of the log at its current checkpoint, parsed (signatures checked), in order."""
    size = Checkpoint.parse(parse_note(client.checkpoint_note())[0]).size
    return [(i, parse_entry(raw)) for i, raw in enumerate(client.entries(size))]


class RemotePort:
    """A ``ContainPort`` over HTTP."""

    def __init__(
        self,
        url: str,
        *,
        officers: list[SigningKey],
        ack_signer: SigningKey,
        ack_actor: str,
        ack_role: str,
        responder: SigningKey | None = None,
    ) -> None:
        self.custody = CustodyClient(url)
        self.ledger = LedgerClient(url)
        self.officers, self.responder = officers, responder
        self.ack_signer, self.ack_actor, self.ack_role = ack_signer, ack_actor, ack_role

    def state(self) -> tuple[CustodyState, set[str]]:
        entries = ledger_entries(self.ledger)
        alarms = {str(e.body.get("alarm_id")) for _, e in entries if e.type == ALARM}
        return replay(entries), alarms

    def admin(self, proposal: admin.Proposal) -> dict[str, Any]:
        return self.custody.admin(admin.propose(proposal, self.officers))

    def alarm(self, host: str, models: list[str], alarm_id: str, detail: dict[str, Any]) -> dict[str, Any]:
        if self.responder is None:
            raise ValueError("an egress alarm needs the responder's appender key")
        receipts = [
            self.ledger.append(
                build_entry(
                    ALARM,
                    {"host": host, "model_id": model, "alarm_id": alarm_id, "kind": ALARM_KIND, "detail": detail},
                    self.responder,
                ).raw
            )
            for model in models
        ]
        return {"host": host, "alarm_id": alarm_id, "entries": receipts}

    def acknowledge(self, incident: str, step: str) -> dict[str, Any]:
        return self.custody.acknowledge(new_step_ack(incident, step, self.ack_role, self.ack_actor, self.ack_signer))

    def close(self) -> None:
        self.custody.close()
        self.ledger.close()
