"""Who did what, in what order, and what is overdue: an incident's playbook steps against the ledger.

Pure: the incident as custody replay built it (``strongroom.custody.state.Incident``, passed in as plain
values), the playbook, and ``now``. A step is *done* when an ``incident.step`` acknowledgement for it is on
the ledger (the declaration and the lift are their own entries), *overdue* when its deadline from the
declaration has passed without one, else *open*.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from strongroom.incident.playbook import Playbook


def _t(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def step_report(
    incident: str,
    scope: str,
    severity: str,
    declared_at: datetime,
    declared_index: int,
    lifted_at: datetime | None,
    acknowledged: list[dict[str, Any]],
    playbook: Playbook,
    now: datetime,
) -> dict[str, Any]:
    done = {s["step"]: s for s in acknowledged}
    steps = []
    for step in playbook.steps:
        due = declared_at + timedelta(seconds=step.deadline_seconds)
        record = done.get(step.name)
        if step.name == "declare":
            record = {"actor": "officer", "time": _t(declared_at), "index": declared_index}
        elif step.name == "lift" and lifted_at is not None:
            record = {"actor": "quorum", "time": _t(lifted_at), "index": None}
        state = "done" if record else ("overdue" if now > due else "open")
        steps.append({**step.to_json(), "due": _t(due), "state": state, "record": record})
    return {
        "incident": incident,
        "scope": scope,
        "severity": severity,
        "declared_at": _t(declared_at),
        "open": lifted_at is None,
        "playbook": playbook.digest,
        "steps": steps,
        "overdue": [s["step"] for s in steps if s["state"] == "overdue"],
    }
