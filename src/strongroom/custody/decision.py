"""The release decision: one pure function of the signed inputs and the ledger's state at one instant.

The live gate calls it before logging ``key.released``; the offline auditor calls it again on what that
entry carries, with the registries rebuilt from the log up to it, at the logged time. Same inputs, same
code, same answer: "would this release have been allowed?" is always answerable.

Rules (SL5 AC-3(2), PS-3): no open incident covers the model, host, requester or an approver; the request
is unexpired; the requester is active and their effective SenL tier
covers the model's; the host is enrolled, not retired, and the key named is its identity key; at least k
distinct approvers other than the requester, each active, unexpired and at the model's tier or above, at
least one a SenL-5 custodian; no denial by an active person; the release delay has passed; the
policy's host conditions hold (a fresh egress checkpoint with rules in, budget left and no open alarm; a
fresh IN verdict for an allowed country), computed by ``strongroom.custody.conditions``; and, for a model
whose policy requires attestation, the fetch's TPM quote passed ``strongroom.custody.attestation``
(its refusals arrive as ``attestation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import Approval, ReleaseRequest
from strongroom.hosts import HostError, HostRegistry
from strongroom.people import PeopleError, Registry


@dataclass(frozen=True)
class Decision:
    """The outcome: who counted, and every rule that failed (allowed when none did)."""

    allowed: bool
    reasons: tuple[str, ...]
    approvers: tuple[str, ...]
    custodians: tuple[str, ...]


def evaluate(
    policy: ModelPolicy,
    request: ReleaseRequest,
    received_at: datetime,
    approvals: Sequence[Approval],
    people: Registry,
    hosts: HostRegistry,
    now: datetime,
    frozen: Sequence[str] = (),
    *,
    conditions: Sequence[str] = (),
    attestation: Sequence[str] = (),
) -> Decision:
    """Evaluate every rule at ``now`` against the registries as they stand; ``frozen`` names the open
    incidents whose scope covers this release, ``conditions`` the policy's host conditions that fail
    (egress control, location: ``strongroom.custody.conditions``), ``attestation`` why the host's attestation
    failed (``CustodyState.attest_release``; empty when it passed or the model does not require it); each
    refuses it."""
    reasons: list[str] = [*frozen, *conditions, *attestation]
    requester = request.requester
    if now >= request.window.expires_at:
        reasons.append("the request has expired")
    try:
        standing = people.standing(requester, now)
    except PeopleError as exc:
        reasons.append(f"requester: {exc}")
    else:
        if not standing.active:
            reasons.append(f"requester {requester} has no access: {', '.join(standing.reasons)}")
        elif standing.effective_tier < policy.required_tier:
            reasons.append(
                f"requester {requester} is SenL-{standing.effective_tier}; the model needs SenL-{policy.required_tier}"
            )
    try:
        host = hosts.active(request.host_id)
        if host.key_id != request.host_key_id:
            reasons.append(f"host {request.host_id} has another identity key than the request names")
    except HostError as exc:
        reasons.append(str(exc))
    counted: list[str] = []
    custodians: list[str] = []
    not_counted: list[str] = []
    for approval in approvals:
        approver = approval.approver
        if approver == requester:
            not_counted.append(f"{approver} cannot approve their own request")
            continue
        if approver in counted:
            continue
        if now >= approval.window.expires_at:
            not_counted.append(f"the approval by {approver} has expired")
            continue
        try:
            approver_standing = people.standing(approver, now)
        except PeopleError as exc:
            not_counted.append(f"approver: {exc}")
            continue
        if not approver_standing.active:
            not_counted.append(f"approver {approver} has no access: {', '.join(approver_standing.reasons)}")
            continue
        if not approval.approves:
            reasons.append(f"denied by {approver}")
            continue
        if approver_standing.effective_tier < policy.required_tier:
            not_counted.append(
                f"approver {approver} is SenL-{approver_standing.effective_tier}; "
                f"the model needs SenL-{policy.required_tier}"
            )
            continue
        counted.append(approver)
        if approver_standing.custodian:
            custodians.append(approver)
    if len(counted) < policy.approvals:
        reasons.append(f"{len(counted)} of {policy.approvals} required approvals")
        reasons.extend(not_counted)
    if counted and not custodians:
        reasons.append("no SenL-5 custodian among the approvers")
    ready_at = received_at + timedelta(seconds=policy.delay_seconds)
    if now < ready_at:
        reasons.append(f"release delay: not before {ready_at.isoformat()}")
    return Decision(not reasons, tuple(reasons), tuple(counted), tuple(custodians))
