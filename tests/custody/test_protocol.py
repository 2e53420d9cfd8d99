"""Custody's wire protocol: every message parsed once, strictly; times have exactly one form; co-signatures."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strongroom.custody import admin
from strongroom.custody.envelope import CoSigned, SignedMessage, format_time, parse_time
from strongroom.custody.errors import MessageError, NotAuthorisedError
from strongroom.custody.protocol import AdminChange, Approval, ReleaseRequest, new_approval, new_request
from strongroom.signing import Signer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MODEL = "blake3:" + "11" * 32


def request_payload(host: Signer | None = None) -> dict[str, Any]:
    return new_request(
        model_id=MODEL,
        purpose="eval",
        requester="alice",
        host_id="gpu-01",
        host_identity=host or Signer.generate("ed25519"),
        host_ephemeral=os.urandom(32),
        now=NOW,
    )


def test_time_round_trip() -> None:
    moment = datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC)
    assert parse_time(format_time(moment), "issued_at") == moment


@pytest.mark.parametrize(
    "value",
    [
        "2026-1-31T12:00:00Z",
        "2026-01-31T12:00:00",
        "2026-01-31T12:00:00+00:00",
        "2026-01-31T12:00:00.5Z",
        "2026-01-31 12:00:00Z",
        "2026-13-01T12:00:00Z",
        "2026-02-30T12:00:00Z",
        "\uff12026-01-31T12:00:00Z",
        " 2026-01-31T12:00:00Z",
        "",
    ],
)
def test_any_other_time_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(MessageError, match="'expires_at' is not a time like"):
        parse_time(value, "expires_at")
    with pytest.raises(MessageError, match="must be an RFC 3339 UTC time string"):
        parse_time(1700000000, "expires_at")


def test_a_request_parses_once_into_typed_fields_and_the_host_vouches_for_its_key() -> None:
    host, alice = Signer.generate("ed25519"), Signer.generate("ed25519")
    request = ReleaseRequest.parse(SignedMessage.sign(request_payload(host), alice))
    assert request.model_id == MODEL and request.host_key_id == host.key_id and len(request.ephemeral) == 32
    request.verify_host_proof(host.verifier)
    with pytest.raises(MessageError, match="names host key"):
        request.verify_host_proof(Signer.generate("ed25519").verifier)
    # The requester swaps in their own laptop's ephemeral key: the host's signature no longer covers it.
    payload = request_payload(host)
    payload["host"]["ephemeral"] = base64.b64encode(os.urandom(32)).decode()
    swapped = ReleaseRequest.parse(SignedMessage.sign(payload, alice))
    with pytest.raises(MessageError, match="not the enrolled host"):
        swapped.verify_host_proof(host.verifier)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(extra=1), "unknown field 'extra'"),
        (lambda p: p.pop("nonce"), "missing field 'nonce'"),
        (lambda p: p.update(model_id="md5:abc"), "model_id must be"),
        (lambda p: p.update(nonce="abc"), "nonce"),
        (lambda p: p["host"].update(ephemeral="AAAA"), "'ephemeral' must be 32 bytes"),
        (lambda p: p["host"].update(identity="PEM"), "unknown field 'identity'"),
        (lambda p: p.update(expires_at="2026-11-25T12:00:00Z"), "within 24 hours"),
        (lambda p: p.update(issued_at="tomorrow"), "not a time"),
        (lambda p: p.update(type="strongroom.release-request/v1"), "type must be"),
    ],
)
def test_malformed_requests(mutate: Any, message: str) -> None:
    payload = request_payload()
    mutate(payload)
    with pytest.raises(MessageError, match=message):
        ReleaseRequest.parse(SignedMessage.sign(payload, Signer.generate("ed25519")))


def test_freshness_is_checked_at_an_instant() -> None:
    request = ReleaseRequest.parse(SignedMessage.sign(request_payload(), Signer.generate("ed25519")))
    request.window.check_fresh(NOW, "release request")
    with pytest.raises(MessageError, match="expired"):
        request.window.check_fresh(NOW + timedelta(hours=2), "release request")
    with pytest.raises(MessageError, match="issued in the future"):
        request.window.check_fresh(NOW - timedelta(minutes=5), "release request")


def test_approvals_are_bound_to_one_request() -> None:
    alice, carol = Signer.generate("ed25519"), Signer.generate("ed25519")
    first = ReleaseRequest.parse(SignedMessage.sign(request_payload(), alice))
    second = ReleaseRequest.parse(SignedMessage.sign(request_payload(), alice))
    approval = Approval.parse(SignedMessage.sign(new_approval(request=first, approver="carol", now=NOW), carol))
    assert approval.request_id == first.request_id != second.request_id and approval.approves
    with pytest.raises(MessageError, match="decision"):
        Approval.parse(SignedMessage.sign({**approval.signed.payload, "decision": "maybe"}, carol))


def test_malformed_json_messages() -> None:
    for raw, message in [
        ("{", "not valid JSON"),
        ('{"payload": {}}', "exactly payload"),
        ('{"payload": {}, "signer": "a", "signature": "%%%"}', "not base64"),
        ("x" * 70_000, "larger than"),
        ('{"payload": {"n": NaN}, "signer": "a", "signature": ""}', "not canonical JSON"),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
    ]:
        with pytest.raises(MessageError, match=message):
            SignedMessage.from_json(raw, "message")


def test_cosigned_changes_verify_every_signer_and_refuse_strangers() -> None:
    olga, oscar, mallory = (Signer.generate("ed25519") for _ in range(3))
    proposal = admin.offboard("alice", "left")
    signed = admin.propose(proposal, [olga, oscar]).cosigned
    assert signed.cosign(olga) is signed  # one key signs once
    keys = {olga.key_id: olga.verifier, oscar.key_id: oscar.verifier}
    assert signed.verified_signers(keys, "change") == {olga.key_id, oscar.key_id}
    again = CoSigned.from_json(signed.to_json(), "change")
    assert AdminChange.parse(again).change_id == AdminChange.parse(signed).change_id
    with pytest.raises(NotAuthorisedError, match="not an officer"):
        signed.cosign(mallory).verified_signers(keys, "change")
    edited = CoSigned({**signed.payload, "change": {**signed.payload["change"], "person": "bob"}}, signed.signatures)
    with pytest.raises(MessageError, match="does not verify"):
        edited.verified_signers(keys, "change")
    doubled = {**signed.to_json(), "signatures": [signed.to_json()["signatures"][0]] * 2}
    with pytest.raises(MessageError, match="signed twice"):
        CoSigned.from_json(doubled, "change")


@pytest.mark.parametrize(
    ("action", "change", "message"),
    [
        ("person.dance", {}, "unknown action"),
        ("person.enrol", {"change": "offboard", "person": "a"}, "must be 'enrol'"),
        ("model.register", {"model_id": MODEL, "key": {}, "policy": {"required_tier": 3}}, "key reference"),
        ("model.policy", {"model_id": MODEL, "policy": {"required_tier": 9}}, "required_tier"),
        ("model.policy", {"model_id": MODEL, "policy": {"required_tier": 3, "approvals": 0}}, "approvals"),
        ("authority.change", {"officers": [], "threshold": 1}, "officers must be"),
    ],
)
def test_malformed_administrative_changes(action: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(MessageError, match=message):
        admin.propose(admin.Proposal(action, change), [Signer.generate("ed25519")])


def test_personnel_details_are_commitments_with_private_openings() -> None:
    """Names, positions, signal kinds and details never reach the (public) signed change in clear."""
    from strongroom.custody.details import check_openings
    from strongroom.people import SignalKind

    olga = Signer.generate("ed25519")
    proposal = admin.raise_signal("alice", SignalKind.FINANCIAL, detail="large unexplained debt")
    submitted = admin.propose(proposal, [olga])
    public = submitted.cosigned.payload["change"]
    assert public["kind"].startswith("commit:sha256:") and public["detail"].startswith("commit:sha256:")
    assert "debt" not in str(submitted.cosigned.to_json()) and "financial" not in str(submitted.cosigned.to_json())
    assert {k: v["value"] for k, v in submitted.openings.items()} == {
        "kind": "financial",
        "detail": "large unexplained debt",
    }
    check_openings("person.signal", public, submitted.openings)
    wrong = {**submitted.openings, "detail": {**submitted.openings["detail"], "value": "nothing"}}
    with pytest.raises(MessageError, match="does not match its commitment"):
        check_openings("person.signal", public, wrong)
    with pytest.raises(MessageError, match="must be a commitment, not in clear"):
        check_openings("person.signal", {**public, "detail": "debt"}, submitted.openings)
    with pytest.raises(MessageError, match="no opening"):
        check_openings("person.signal", public, {})
