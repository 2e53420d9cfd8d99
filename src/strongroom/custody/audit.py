"""The auditor's reading of custody: the whole log replayed offline, every release re-decided.

The auditor needs the log and nothing the operator says. It replays every entry with the very code the
live service runs (``strongroom.custody.state``): the writer of each entry, the officers' signatures and
their number for every administrative change, people, hosts and models as they stood, key bindings, and
for each ``key.released`` the decision function again, at the logged time, on the signed request and
approvals the entry carries (with, for an attested release, its TPM quote re-verified against the host's
enrolled AK and the golden values then on the ledger, and the ledger head it binds checked against the
log's own entry). Any entry that would not have been accepted is named, with the reason.
Egress and location entries by keys the officers did not enroll for them are listed as ``ignored``: they
count for nothing, so they are not failures.

A release under host conditions is decided on the log as the service had read it (``ledger_seen``), which
may trail the release by up to ``MAX_LAG`` entries. The auditor also decides the conditions on every entry
before the release and lists what arrived in between and would have refused it (``late_conditions``): an
honest race shows one such alarm at most once in a while; a service that kept choosing an old
``ledger_seen`` to step around alarms shows a pattern.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from strongroom.custody.envelope import SignedMessage, parse_time
from strongroom.custody.errors import UnverifiableEntryError
from strongroom.custody.protocol import Approval, ReleaseRequest
from strongroom.custody.state import CustodyState, Problem
from strongroom.errors import StrongroomError
from strongroom.ledger.entries import Entry
from strongroom.ledger.merkle import leaf_hash


@dataclass
class CustodyAudit:
    """What replaying custody established: the genesis officers, each release, and every refused entry."""

    entries: int = 0
    officers: list[dict[str, str]] = field(default_factory=list)
    threshold: int = 0
    releases: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)  # appenders' entries custody does not count
    late: list[int] = field(default_factory=list)  # releases whose conditions failed on the entries before them

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "officers": self.officers,
            "threshold": self.threshold,
            "releases": self.releases,
            "problems": [p.to_json() for p in self.problems],
            "ignored": self.ignored,
            "late_conditions": self.late,
            "ok": self.ok,
        }


def audit_custody(entries: Iterable[tuple[int, Entry]]) -> CustodyAudit:
    """Replay ``entries`` (the whole log, in order) and report every release and every refused entry."""
    leaves: dict[int, bytes] = {}
    state = CustodyState(leaf_hash_of=leaves.get)
    audit = CustodyAudit()
    loads: dict[str, list[dict[str, Any]]] = {}
    for index, entry in entries:
        audit.entries += 1
        leaves[index] = leaf_hash(entry.raw)
        try:
            state.apply(index, entry)
            verified, reason = True, None
        except UnverifiableEntryError as exc:
            verified, reason = False, str(exc)
            audit.problems.append(Problem(index, entry.type, str(exc)))
        if entry.type == "key.released":
            finding = _release(index, entry, verified, reason, loads)
            late = _late_conditions(state, index, entry) if verified else []
            if late:
                finding["late_conditions"] = late
                audit.late.append(index)
            audit.releases.append(finding)
        elif entry.type == "model.loaded" and verified:
            load = {"index": index, "host": entry.body.get("host"), "time": entry.time}
            if "attestation" in entry.body:
                load["attestation"] = entry.body["attestation"]
            loads.setdefault(str(entry.body["request_id"]), []).append(load)
    audit.ignored = [i.to_json() for i in state.projection.ignored]
    if state.authority is not None:
        audit.officers = [{"name": o.name, "key_id": o.verifier.key_id} for o in state.authority.officers]
        audit.threshold = state.authority.threshold
    return audit


def _late_conditions(state: CustodyState, index: int, entry: Entry) -> list[str]:
    """The host conditions of a release decided on every entry before it rather than before its
    ``ledger_seen``: what arrived while the service decided (or what it chose not to read)."""
    body = entry.body
    seen = body.get("ledger_seen")
    if not isinstance(seen, int) or isinstance(seen, bool) or seen >= index:
        return []
    try:
        policy = state.model(str(body.get("model_id"))).policy
        request = ReleaseRequest.parse(SignedMessage.from_json(body.get("request"), "request"))
        if not state.projection.arrived(request.host_id, seen, index):
            return []  # nothing about this host arrived in between: the same inputs, the same decision
        return state.host_reasons(policy, request.host_id, parse_time(entry.time, "time"), index)
    except (StrongroomError, TypeError):
        return []


def _release(
    index: int, entry: Entry, verified: bool, reason: str | None, loads: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """A readable record of one release (what it claims; ``verified`` says whether replay accepted it)."""
    body = entry.body
    finding: dict[str, Any] = {
        "index": index,
        "time": entry.time,
        "model_id": body.get("model_id"),
        "request_id": body.get("request_id"),
        "verified": verified,
        "problems": [reason] if reason else [],
        "loads": loads.setdefault(str(body.get("request_id")), []),
    }
    try:
        request = ReleaseRequest.parse(SignedMessage.from_json(body.get("request"), "request"))
        approvals = [Approval.parse(SignedMessage.from_json(a, "approval")) for a in body.get("approvals", [])]
    except (StrongroomError, TypeError):
        return finding
    finding.update(
        requester=request.requester,
        host=request.host_id,
        approvals=[
            {"approver": a.approver, "decision": a.decision, "time": a.signed.payload["issued_at"]} for a in approvals
        ],
        custodians=body.get("custodians", []),
    )
    record = body.get("attestation")
    if isinstance(record, dict):
        finding["attestation"] = record.get("verdict")
    return finding
