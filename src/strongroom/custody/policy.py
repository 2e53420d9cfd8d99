"""The release policy: who may receive a model's data key, and with whose approval.

Rules (SL5 AC-3(2), PS-3): the requester's effective SenL tier covers the model's required tier; at least
k distinct approvers, none of them the requester, none suspended, lapsed or offboarded, at least one of
them a SenL-5 custodian; no standing denial; the request unexpired; and an optional delay since the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from strongroom.custody.messages import SignedMessage, parse_time
from strongroom.people.registry import Registry
from strongroom.people.tiers import check_tier


@dataclass(frozen=True)
class ModelPolicy:
    """Release rules for one model id."""

    model_id: str
    required_tier: int
    approvals: int = 2
    delay_seconds: int = 0

    def __post_init__(self) -> None:
        check_tier(self.required_tier, "required_tier")
        if not 1 <= self.approvals <= 16:
            raise ValueError("approvals must be between 1 and 16")
        if not 0 <= self.delay_seconds <= 7 * 86400:
            raise ValueError("delay_seconds must be between 0 and one week")

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "required_tier": self.required_tier,
            "approvals": self.approvals,
            "delay_seconds": self.delay_seconds,
        }


@dataclass(frozen=True)
class Decision:
    """The outcome of evaluating the policy: who counted, and every rule that failed."""

    allowed: bool
    reasons: tuple[str, ...]
    approvers: tuple[str, ...]
    custodians: tuple[str, ...]


def evaluate(
    policy: ModelPolicy,
    request: SignedMessage,
    received_at: datetime,
    approvals: list[SignedMessage],
    registry: Registry,
    now: datetime,
) -> Decision:
    """Evaluate every rule at ``now`` against the registry as it stands now."""
    reasons: list[str] = []
    payload = request.payload
    requester = payload["requester"]
    if now >= parse_time(payload["expires_at"], "expires_at"):
        reasons.append("the request has expired")
    standing = registry.standing(requester, now)
    if not standing.active:
        reasons.append(f"requester {requester} has no access: {', '.join(standing.reasons)}")
    elif standing.effective_tier < policy.required_tier:
        reasons.append(
            f"requester {requester} is SenL-{standing.effective_tier}; the model needs SenL-{policy.required_tier}"
        )
    counted: list[str] = []
    custodians: list[str] = []
    not_counted: list[str] = []
    for approval in approvals:
        approver = approval.payload["approver"]
        if approver == requester:
            not_counted.append(f"{approver} cannot approve their own request")
            continue
        if approver in counted:
            continue
        if now >= parse_time(approval.payload["expires_at"], "expires_at"):
            not_counted.append(f"the approval by {approver} has expired")
            continue
        approver_standing = registry.standing(approver, now)
        if not approver_standing.active:
            not_counted.append(f"approver {approver} has no access: {', '.join(approver_standing.reasons)}")
            continue
        if approval.payload["decision"] == "deny":
            reasons.append(f"denied by {approver}")
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
