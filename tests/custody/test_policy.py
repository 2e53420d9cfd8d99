"""Release policy and signed messages: every rule refuses on its own, and forged or moved approvals fail."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.custody.errors import MessageError
from strongroom.custody.messages import (
    SignedMessage,
    new_approval,
    new_request,
    validate_approval,
    validate_request,
)
from strongroom.custody.policy import ModelPolicy, evaluate
from strongroom.people import Registry
from strongroom.signing import Signer
from tests.people.test_registry import enrol

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MODEL = "blake3:" + "11" * 32


@pytest.fixture
def people() -> tuple[Registry, dict[str, Signer]]:
    registry = Registry()
    keys = {
        "alice": enrol(registry, "alice", 4),
        "bob": enrol(registry, "bob", 4),
        "carol": enrol(registry, "carol", 5, custodian=True),
        "dan": enrol(registry, "dan", 5, custodian=True),
    }
    return registry, keys


def request_by(keys: dict[str, Signer], who: str = "alice", now: datetime = NOW) -> SignedMessage:
    host = Signer.generate("ed25519")
    payload = new_request(
        model_id=MODEL,
        purpose="eval",
        requester=who,
        host_id="gpu-01",
        host_identity_pem=host.verifier.pem().decode(),
        host_ephemeral=os.urandom(32),
        now=now,
    )
    return SignedMessage.sign(payload, keys[who])


def approve(
    keys: dict[str, Signer], request: SignedMessage, who: str, decision: str = "approve", now: datetime = NOW
) -> SignedMessage:
    return SignedMessage.sign(new_approval(request=request, approver=who, decision=decision, now=now), keys[who])


def test_two_approvals_with_a_custodian_release(people: tuple[Registry, dict[str, Signer]]) -> None:
    registry, keys = people
    request = request_by(keys)
    decision = evaluate(
        ModelPolicy(MODEL, 4, 2),
        request,
        NOW,
        [approve(keys, request, "bob"), approve(keys, request, "carol")],
        registry,
        NOW,
    )
    assert decision.allowed and decision.approvers == ("bob", "carol") and decision.custodians == ("carol",)


@pytest.mark.parametrize(
    ("approvers", "expected"),
    [
        (["carol"], "1 of 2 required approvals"),
        (["bob", "bob"], "1 of 2 required approvals"),
        (["alice", "carol"], "alice cannot approve their own request"),
        (["bob", "bob", "alice"], "no SenL-5 custodian among the approvers"),
    ],
)
def test_approval_rules(people: tuple[Registry, dict[str, Signer]], approvers: list[str], expected: str) -> None:
    registry, keys = people
    request = request_by(keys)
    decision = evaluate(
        ModelPolicy(MODEL, 4, 2), request, NOW, [approve(keys, request, a) for a in approvers], registry, NOW
    )
    assert not decision.allowed and any(expected in r for r in decision.reasons), decision.reasons


def test_suspended_approver_does_not_count(people: tuple[Registry, dict[str, Signer]]) -> None:
    registry, keys = people
    request = request_by(keys)
    registry.apply(
        {"change": "signal", "person": "carol", "signal_id": "s9", "kind": "travel", "observed_on": "2026-11-20"}
    )
    decision = evaluate(
        ModelPolicy(MODEL, 4, 2),
        request,
        NOW,
        [approve(keys, request, "bob"), approve(keys, request, "carol")],
        registry,
        NOW,
    )
    assert not decision.allowed
    assert "approver carol has no access: suspended: open travel signal s9" in decision.reasons


def test_requester_tier_and_denial_and_delay(people: tuple[Registry, dict[str, Signer]]) -> None:
    registry, keys = people
    request = request_by(keys)
    approvals = [approve(keys, request, "bob"), approve(keys, request, "carol")]
    assert (
        "requester alice is SenL-4; the model needs SenL-5"
        in evaluate(ModelPolicy(MODEL, 5, 2), request, NOW, approvals, registry, NOW).reasons
    )
    denied = evaluate(
        ModelPolicy(MODEL, 4, 2), request, NOW, [*approvals, approve(keys, request, "dan", "deny")], registry, NOW
    )
    assert "denied by dan" in denied.reasons
    delayed = evaluate(ModelPolicy(MODEL, 4, 2, delay_seconds=600), request, NOW, approvals, registry, NOW)
    assert any(r.startswith("release delay") for r in delayed.reasons)
    later = NOW + timedelta(minutes=11)
    assert evaluate(ModelPolicy(MODEL, 4, 2, delay_seconds=600), request, NOW, approvals, registry, later).allowed


def test_expired_request(people: tuple[Registry, dict[str, Signer]]) -> None:
    registry, keys = people
    request = request_by(keys)
    approvals = [approve(keys, request, "bob"), approve(keys, request, "carol")]
    late = NOW + timedelta(hours=2)
    assert (
        "the request has expired" in evaluate(ModelPolicy(MODEL, 4, 2), request, NOW, approvals, registry, late).reasons
    )
    with pytest.raises(MessageError, match="expired"):
        validate_request(request.payload, late)


def test_forged_and_altered_messages(people: tuple[Registry, dict[str, Signer]]) -> None:
    registry, keys = people
    request = request_by(keys)
    request.verify(registry.get("alice").verifier, "request")
    forged = SignedMessage(request.payload, keys["alice"].key_id, keys["bob"].sign(b"x"))
    with pytest.raises(MessageError, match="does not verify"):
        forged.verify(registry.get("alice").verifier, "request")
    altered = SignedMessage({**request.payload, "purpose": "exfiltrate"}, request.signer, request.signature)
    with pytest.raises(MessageError, match="does not verify"):
        altered.verify(registry.get("alice").verifier, "request")
    with pytest.raises(MessageError, match="signed by key"):
        request.verify(registry.get("bob").verifier, "request")


def test_approval_is_bound_to_its_request(people: tuple[Registry, dict[str, Signer]]) -> None:
    _, keys = people
    first, second = request_by(keys), request_by(keys)
    approval = approve(keys, first, "carol")
    assert approval.payload["request_id"] == first.digest != second.digest


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(extra=1), "unknown field 'extra'"),
        (lambda p: p.pop("nonce"), "missing field 'nonce'"),
        (lambda p: p.update(model_id="md5:abc"), "model_id must be"),
        (lambda p: p.update(nonce="abc"), "nonce must be"),
        (lambda p: p["host"].update(ephemeral="AAAA"), "X25519"),
        (lambda p: p.update(expires_at="2026-11-25T12:00:00Z"), "within 24 hours"),
        (lambda p: p.update(issued_at="tomorrow"), "not a time"),
    ],
)
def test_malformed_requests(people: tuple[Registry, dict[str, Signer]], mutate: object, message: str) -> None:
    _, keys = people
    payload = request_by(keys).payload
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(MessageError, match=message):
        validate_request(payload, NOW)


def test_malformed_json_messages() -> None:
    for raw, message in [
        ("{", "not valid JSON"),
        ('{"payload": {}}', "exactly payload"),
        ('{"payload": {}, "signer": "a", "signature": "%%%"}', "not base64"),
        ("x" * 70_000, "larger than"),
    ]:
        with pytest.raises(MessageError, match=message):
            SignedMessage.from_json(raw, "message")


def test_approval_validation(people: tuple[Registry, dict[str, Signer]]) -> None:
    _, keys = people
    payload = approve(keys, request_by(keys), "carol").payload
    validate_approval(payload, NOW)
    with pytest.raises(MessageError, match="decision"):
        validate_approval({**payload, "decision": "maybe"}, NOW)
