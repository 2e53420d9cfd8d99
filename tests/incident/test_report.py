"""The incident report: every playbook step done (by whom, when), open, or overdue against its deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strongroom.incident.errors import PlaybookError
from strongroom.incident.playbook import Playbook, duration_seconds, shipped
from strongroom.incident.report import step_report

DECLARED = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def report(now: datetime, acknowledged: list[dict[str, object]], lifted: datetime | None = None) -> dict[str, object]:
    return step_report("ab" * 8, "all", "confirmed", DECLARED, 7, lifted, acknowledged, shipped("leak"), now)  # type: ignore[arg-type]


def test_steps_become_overdue_at_their_deadlines() -> None:
    early = report(DECLARED + timedelta(minutes=10), [])
    assert early["overdue"] == [] and early["open"] is True
    later = report(DECLARED + timedelta(minutes=61), [{"step": "brief-executive", "actor": "erin", "time": "t"}])
    states = {s["step"]: s["state"] for s in later["steps"]}  # type: ignore[attr-defined]
    assert states["declare"] == "done" and states["brief-executive"] == "done"
    assert later["overdue"] == ["retire-hosts", "suspend-people", "egress-alarm"]
    closed = report(DECLARED + timedelta(days=40), [], lifted=DECLARED + timedelta(days=2))
    assert closed["open"] is False and "lift" not in closed["overdue"] and "review" in closed["overdue"]


def test_playbooks_that_are_not_the_executed_subset_are_refused() -> None:
    document = shipped("leak").document
    with pytest.raises(PlaybookError, match="cacao-2.0"):
        Playbook.parse(dict(document, spec_version="cacao-1.1"))
    workflow = dict(document["workflow"])
    orphan = dict(next(v for v in workflow.values() if v["type"] == "action"))
    workflow["action--orphan"] = orphan
    with pytest.raises(PlaybookError, match="cannot be reached"):
        Playbook.parse(dict(document, workflow=workflow))
    assert duration_seconds("P1DT4H") == 28 * 3600
    with pytest.raises(PlaybookError):
        duration_seconds("soon")
    assert {s.role for s in shipped("distillation").steps} <= {
        "security-officer", "custodian", "operator", "executive", "external-liaison"
    }  # fmt: skip
