"""The auditor's reading of custody: every release on the ledger, re-checked offline.

The people registry is rebuilt from the ``person.changed`` entries that precede each release, and the
request and every approval carried inside ``key.released`` are verified against the keys enrolled at
that point: an auditor needs the log and nothing the operator says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strongroom.custody.errors import MessageError
from strongroom.custody.messages import SignedMessage
from strongroom.errors import StrongroomError
from strongroom.ledger.entries import Entry
from strongroom.people.registry import Registry


def audit_releases(entries: Sequence[tuple[int, Entry]]) -> list[dict[str, Any]]:
    """One finding per ``key.released`` entry, in log order, each with ``verified`` and any problems."""
    registry = Registry()
    loads: dict[str, list[dict[str, Any]]] = {}
    for index, entry in entries:
        if entry.type == "model.loaded":
            loads.setdefault(str(entry.body.get("request_id")), []).append(
                {"index": index, "host": entry.body.get("host"), "model_id": entry.model_id, "time": entry.time}
            )
    findings: list[dict[str, Any]] = []
    for index, entry in entries:
        if entry.type == "person.changed":
            try:
                registry.apply(entry.body)
            except StrongroomError as exc:
                findings.append({"index": index, "type": "person.changed", "verified": False, "problems": [str(exc)]})
        elif entry.type == "key.released":
            findings.append(_check_release(index, entry, registry, loads))
    return findings


def _check_release(
    index: int, entry: Entry, registry: Registry, loads: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    body = entry.body
    problems: list[str] = []
    approvals: list[dict[str, Any]] = []
    try:
        request = SignedMessage.from_json(body["request"], "request")
        requester = request.payload["requester"]
        request.verify(registry.get(requester).verifier, f"request by {requester}")
        if request.digest != body["request_id"]:
            problems.append("request id does not match the logged request")
        for raw in body.get("approvals", []):
            approval = SignedMessage.from_json(raw, "approval")
            approver = approval.payload["approver"]
            try:
                approval.verify(registry.get(approver).verifier, f"approval by {approver}")
                if approval.payload["request_id"] != request.digest:
                    raise MessageError(f"approval by {approver} is for another request")
                approvals.append(
                    {
                        "approver": approver,
                        "decision": approval.payload["decision"],
                        "time": approval.payload["issued_at"],
                    }
                )
            except StrongroomError as exc:
                problems.append(str(exc))
        if len({a["approver"] for a in approvals}) < len(body.get("approvers", [])):
            problems.append("fewer valid approval signatures than approvers claimed")
        if requester in {a["approver"] for a in approvals}:
            problems.append("the requester approved their own request")
    except (StrongroomError, KeyError, TypeError) as exc:
        problems.append(f"malformed key.released entry: {exc}")
        requester = body.get("request", {}).get("payload", {}).get("requester", "?")
    return {
        "index": index,
        "type": "key.released",
        "time": entry.time,
        "model_id": body.get("model_id"),
        "request_id": body.get("request_id"),
        "requester": requester,
        "host": body.get("host", {}).get("host_id"),
        "approvals": approvals,
        "custodians": body.get("custodians", []),
        "loads": loads.get(str(body.get("request_id")), []),
        "verified": not problems,
        "problems": problems,
    }
