"""The release decision: every rule refuses on its own, as a pure function of inputs, registries and time."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.custody.decision import evaluate
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import Approval, ReleaseRequest, new_approval, new_request
from strongroom.hosts import HostRegistry
from strongroom.people import Registry
from strongroom.signing import Signer
from tests.people.test_registry import enrol

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MODEL = "blake3:" + "11" * 32
World = tuple[Registry, HostRegistry, dict[str, Signer]]


@pytest.fixture
def world() -> World:
    people, hosts = Registry(), HostRegistry()
    keys = {
        "alice": enrol(people, "alice", 4),
        "bob": enrol(people, "bob", 4),
        "lou": enrol(people, "lou", 1),
        "carol": enrol(people, "carol", 5, custodian=True),
        "dan": enrol(people, "dan", 5, custodian=True),
        "gpu-01": Signer.generate("ed25519"),
    }
    hosts.apply(
        {
            "change": "enrol",
            "host": "gpu-01",
            "name": "gpu-01",
            "site": "dc1",
            "owner": "ops",
            "public_key": keys["gpu-01"].verifier.pem().decode(),
        }
    )
    return people, hosts, keys


def request_by(keys: dict[str, Signer], who: str = "alice") -> ReleaseRequest:
    payload = new_request(
        model_id=MODEL,
        purpose="eval",
        requester=who,
        host_id="gpu-01",
        host_identity=keys["gpu-01"],
        host_ephemeral=os.urandom(32),
        now=NOW,
    )
    return ReleaseRequest.parse(SignedMessage.sign(payload, keys[who]))


def approve(keys: dict[str, Signer], request: ReleaseRequest, who: str, decision: str = "approve") -> Approval:
    payload = new_approval(request=request, approver=who, decision=decision, now=NOW)
    return Approval.parse(SignedMessage.sign(payload, keys[who]))


def decide(world: World, approvers: list[str], policy: ModelPolicy | None = None, at: datetime = NOW) -> list[str]:
    people, hosts, keys = world
    request = request_by(keys)
    approvals = [approve(keys, request, a.split(":")[0], *a.split(":")[1:]) for a in approvers]
    decision = evaluate(policy or ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, hosts, at)
    return list(decision.reasons)


def test_two_approvals_with_a_custodian_release(world: World) -> None:
    people, hosts, keys = world
    request = request_by(keys)
    approvals = [approve(keys, request, "bob"), approve(keys, request, "carol")]
    decision = evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, hosts, NOW)
    assert decision.allowed and decision.approvers == ("bob", "carol") and decision.custodians == ("carol",)


@pytest.mark.parametrize(
    ("approvers", "expected"),
    [
        (["carol"], "1 of 2 required approvals"),
        (["bob", "bob"], "1 of 2 required approvals"),
        (["alice", "carol"], "alice cannot approve their own request"),
        (["bob", "bob", "alice"], "no SenL-5 custodian among the approvers"),
        (["lou", "carol"], "approver lou is SenL-1; the model needs SenL-4"),
        (["bob", "carol", "dan:deny"], "denied by dan"),
    ],
)
def test_approval_rules(world: World, approvers: list[str], expected: str) -> None:
    reasons = decide(world, approvers)
    assert any(expected in r for r in reasons), reasons


def test_suspended_approver_does_not_count(world: World) -> None:
    people, _, _ = world
    people.apply(
        {"change": "signal", "person": "carol", "signal_id": "s9", "kind": "travel", "observed_on": "2026-11-20"}
    )
    assert "approver carol has no access: suspended: open travel signal s9" in decide(world, ["bob", "carol"])


def test_requester_tier_and_delay_and_expiry(world: World) -> None:
    assert "requester alice is SenL-4; the model needs SenL-5" in decide(
        world, ["carol", "dan"], ModelPolicy(MODEL, 5, 2)
    )
    delayed = ModelPolicy(MODEL, 4, 2, delay_seconds=600)
    assert any(r.startswith("release delay") for r in decide(world, ["bob", "carol"], delayed))
    assert decide(world, ["bob", "carol"], delayed, NOW + timedelta(minutes=11)) == []
    assert "the request has expired" in decide(world, ["bob", "carol"], at=NOW + timedelta(hours=2))


def test_the_host_must_be_enrolled_active_and_the_one_named(world: World) -> None:
    people, hosts, keys = world
    request = request_by(keys)
    approvals = [approve(keys, request, "bob"), approve(keys, request, "carol")]
    hosts.apply({"change": "retire", "host": "gpu-01"})
    reasons = evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, hosts, NOW).reasons
    assert "host 'gpu-01' is retired" in reasons
    assert (
        "no host 'gpu-01' is enrolled"
        in evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, HostRegistry(), NOW).reasons
    )


def test_the_decision_is_the_same_whenever_it_is_taken(world: World) -> None:
    """Pure: the same inputs give the same answer, so the auditor's replay can only agree with the gate."""
    people, hosts, keys = world
    request = request_by(keys)
    approvals = [approve(keys, request, "bob"), approve(keys, request, "carol")]
    first = evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, hosts, NOW)
    assert first == evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, people, hosts, NOW)
