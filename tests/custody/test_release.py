"""Quorum key release end to end over HTTP, and every way it must refuse (changing nothing when it does)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import httpx
import pytest

from strongroom.custody.audit import audit_releases
from strongroom.custody.errors import CustodyError, UnavailableError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.messages import SignedMessage, new_approval, utc_now
from strongroom.custody.service import CustodyService
from strongroom.ledger.client import LedgerClient
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv


def released_entries(env: CustodyEnv) -> int:
    return len(env.services.ledger.query(type="key.released"))


def test_two_approvals_release_load_and_audit(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    assert [p["request_id"] for p in env.pending_for("carol")] == [request_id]
    assert env.pending_for("alice") == []
    assert env.approve(request, "bob") == 1
    assert env.approve(request, "carol") == 2
    verified, summary = load_released(env.client, host, request_id, env.sealed)
    assert summary["model_id"] == env.model_id and summary["tensors"] == 104
    assert summary["released_entry"]["index"] < summary["loaded_entry"]["index"]
    assert "config.json" in verified.files
    findings = [f for f in audit_releases(LedgerClient(env.url).query()) if f["type"] == "key.released"]
    assert len(findings) == 1 and findings[0]["verified"]
    assert [a["approver"] for a in findings[0]["approvals"]] == ["bob", "carol"]
    assert findings[0]["loads"][0]["host"] == "gpu-01"
    with pytest.raises(CustodyError, match="409.*already released"):
        env.client.release(request_id, host.fetch(request_id))


def test_replayed_and_transplanted_approvals(env: CustodyEnv) -> None:
    _, first, first_id = env.request()
    _, _second, second_id = env.request()
    approval = SignedMessage.sign(new_approval(request=first, approver="carol"), env.people["carol"])
    env.client.approve(first_id, approval)
    with pytest.raises(CustodyError, match="replayed"):
        env.client.approve(first_id, approval)
    with pytest.raises(CustodyError, match="transplanted"):
        env.client.approve(second_id, approval)
    assert env.client.status(second_id)["approvals"] == []


def test_forged_signatures(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    forged = SignedMessage.sign(new_approval(request=request, approver="carol"), env.people["bob"])
    with pytest.raises(CustodyError, match="400.*signed by key"):
        env.client.approve(request_id, forged)
    genuine = SignedMessage.sign(new_approval(request=request, approver="carol"), env.people["carol"])
    altered = SignedMessage(
        {**genuine.payload, "decision": "approve", "reason": "added later"}, genuine.signer, genuine.signature
    )
    with pytest.raises(CustodyError, match="does not verify"):
        env.client.approve(request_id, altered)
    impostor = HostSession("gpu-01", Signer.generate("ed25519"))
    env.approve(request, "bob")
    env.approve(request, "carol")
    with pytest.raises(CustodyError, match="only the requesting host"):
        env.client.release(request_id, impostor.fetch(request_id))
    assert released_entries(env) == 0
    assert env.client.release(request_id, host.fetch(request_id))["approvers"] == ["bob", "carol"]


def test_self_approval_and_too_few_and_no_custodian(env: CustodyEnv) -> None:
    host, request, request_id = env.request("bob")
    with pytest.raises(CustodyError, match="403.*cannot approve their own request"):
        env.approve(request, "bob")
    env.approve(request, "carol")
    with pytest.raises(CustodyError, match="403.*1 of 2 required approvals"):
        env.client.release(request_id, host.fetch(request_id))
    host2, request2, request2_id = env.request("alice")
    env.approve(request2, "bob")
    env.approve(request2, "erin")
    with pytest.raises(CustodyError, match="no SenL-5 custodian"):
        env.client.release(request2_id, host2.fetch(request2_id))
    assert released_entries(env) == 0
    assert env.client.status(request2_id)["state"] == "pending"


def test_suspended_or_lapsed_people(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    env.change(
        {
            "change": "signal",
            "person": "carol",
            "signal_id": "s1",
            "kind": "financial",
            "observed_on": utc_now().date().isoformat(),
        }
    )
    with pytest.raises(CustodyError, match="approver carol has no access: suspended"):
        env.client.release(request_id, host.fetch(request_id))
    with pytest.raises(CustodyError, match="403.*carol has no access"):
        env.approve(env.request()[1], "carol")
    env.change({"change": "clear", "person": "carol", "signal_id": "s1", "reviewer": "dave"})
    env.change({"change": "vetted", "person": "alice", "vetted_on": "2020-01-01"})
    with pytest.raises(CustodyError, match="requester alice has no access: overdue"):
        env.client.release(request_id, host.fetch(request_id))
    with pytest.raises(CustodyError, match="403.*alice has no access"):
        env.request("alice")
    assert released_entries(env) == 0


def test_denial_blocks(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    env.approve(request, "dave", "deny")
    with pytest.raises(CustodyError, match="denied by dave"):
        env.client.release(request_id, host.fetch(request_id))


def test_expired_request(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    real = env.services.custody.clock
    env.services.custody.clock = lambda: real() + timedelta(hours=2)
    try:
        with pytest.raises(CustodyError, match="expired"):
            env.client.release(request_id, host.fetch(request_id))
    finally:
        env.services.custody.clock = real
    assert released_entries(env) == 0


def test_two_hosts_race_for_one_release(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def race() -> None:
        fetch = host.fetch(request_id)
        barrier.wait()
        try:
            env.client.release(request_id, fetch)
            outcomes.append("released")
        except CustodyError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("released") == 1, outcomes
    assert all("409" in o for o in outcomes if o != "released")
    assert released_entries(env) == 1


def test_fail_closed_when_ledger_or_provider_is_down(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    env.keyring.close()
    with pytest.raises(UnavailableError, match="503.*key provider"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.client.status(request_id)["state"] == "pending" and released_entries(env) == 0
    env.services.custody.providers = []
    with pytest.raises(UnavailableError, match="503.*no key provider"):
        env.client.release(request_id, host.fetch(request_id))
    from strongroom.keys import LocalKeyring

    env.services.custody.providers = [LocalKeyring.open(env.sealed.parent / "keys", passphrase="custody")]
    env.services.ledger.store.close()
    with pytest.raises(UnavailableError, match="503.*ledger"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.client.status(request_id)["state"] == "pending"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "not valid JSON"),
        (b'{"payload": {}, "signer": "x"}', 400, "exactly payload"),
        (b"x" * 70_000, 413, "larger than"),
        (
            json.dumps({"payload": {"type": "strongroom.release-request/v1"}, "signer": "a", "signature": ""}).encode(),
            400,
            "missing field",
        ),
    ],
)
def test_malformed_bodies(env: CustodyEnv, body: bytes, status: int, message: str) -> None:
    reply = httpx.post(env.url + "/v1/custody/requests", content=body)
    assert reply.status_code == status and message in reply.text


def test_unknown_fields_are_refused(env: CustodyEnv) -> None:
    host = HostSession("gpu-01", Signer.generate("ed25519"))
    payload = {**host.request_payload(env.model_id, "evaluation", "alice"), "priority": "urgent"}
    with pytest.raises(CustodyError, match="unknown field 'priority'"):
        env.client.submit_request(SignedMessage.sign(payload, env.people["alice"]))
    payload = host.request_payload("blake3:" + "00" * 32, "evaluation", "alice")
    with pytest.raises(CustodyError, match="not registered"):
        env.client.submit_request(SignedMessage.sign(payload, env.people["alice"]))


def test_release_reports_its_server_time_and_closes_the_request(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    reply = httpx.post(
        f"{env.url}/v1/custody/requests/{request_id}/release", json=host.fetch(request_id).to_json(), timeout=30
    )
    assert reply.status_code == 200
    name, _, duration = reply.headers["server-timing"].partition(";dur=")
    assert name == "release" and float(duration) > 0
    assert env.client.status(request_id)["state"] == "released"
    late = SignedMessage.sign(new_approval(request=request, approver="dave"), env.people["dave"])
    with pytest.raises(CustodyError, match="is released, not pending"):
        env.client.approve(request_id, late)


def test_a_crash_mid_release_is_settled_by_the_ledger_at_start(env: CustodyEnv) -> None:
    """A request left ``releasing`` goes back to pending without a key.released entry, else becomes released."""
    custody = env.services.custody
    store = custody.store
    _, request, never_logged = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    host, request, logged = env.request()
    env.approve(request, "bob")
    env.approve(request, "carol")
    env.client.release(logged, host.fetch(logged))
    # The crash: the first was claimed and nothing more; the second was logged but its record never written.
    store.write(
        lambda tx: tx.execute("UPDATE custody_requests SET state = 'releasing' WHERE request_id = ?", (never_logged,))
    )
    store.write(
        lambda tx: tx.execute("UPDATE custody_requests SET state = 'releasing' WHERE request_id = ?", (logged,))
    )
    store.write(lambda tx: tx.execute("DELETE FROM custody_releases WHERE request_id = ?", (logged,)))

    restarted = CustodyService(store, env.services.ledger, custody.operator, custody.providers)
    assert restarted.settled == {never_logged: "pending", logged: "released"}
    assert restarted.status(never_logged)["state"] == "pending"
    assert restarted.status(logged)["state"] == "released"
    with store.transaction(write=False) as tx:
        row = tx.one("SELECT ledger_index FROM custody_releases WHERE request_id = ?", (logged,))
    assert row is not None and row[0] == env.services.ledger.query(type="key.released")[0][0]
    assert CustodyService(store, env.services.ledger, custody.operator, custody.providers).settled == {}
