"""Quorum key release end to end over HTTP, and every way it must refuse (changing nothing when it does)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import httpx
import pytest

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import (
    AlreadyExistsError,
    CustodyError,
    MessageError,
    NotFoundError,
    PolicyError,
    ReleaseConflictError,
    UnavailableError,
)
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.protocol import OFFICER_READER, new_approval, new_load_report, new_read_query
from strongroom.custody.service import CustodyService
from strongroom.custody.store import RELEASING
from strongroom.keys import LocalKeyring
from strongroom.people import SignalKind
from strongroom.signing import Signer
from tests.custody.conftest import PASSPHRASE, CustodyEnv


def test_two_approvals_release_load_and_audit(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    pending = env.pending_for("carol")
    assert [p.request_id for p in pending] == [request_id]
    assert pending[0].host["name"] == "gpu-01.dc1" and pending[0].host["fingerprint"].startswith("SHA256:")
    assert env.pending_for("alice") == []
    assert env.approve(request, "bob") == 1
    assert env.approve(request, "carol") == 2
    verified, summary = load_released(env.client, host, request_id, env.sealed)
    assert summary["model_id"] == env.model_id and summary["tensors"] == 104
    assert summary["released_entry"]["index"] < summary["loaded_entry"]["index"]
    assert "config.json" in verified.files
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems
    assert len(audit.releases) == 1 and audit.releases[0]["verified"]
    assert [a["approver"] for a in audit.releases[0]["approvals"]] == ["bob", "carol"]
    assert audit.releases[0]["loads"][0]["host"] == "gpu-01"
    assert [o["name"] for o in audit.officers] == ["olga", "oscar", "otto"] and audit.threshold == 2


def test_replayed_and_transplanted_approvals(env: CustodyEnv) -> None:
    _, first, first_id = env.request()
    _, _second, second_id = env.request()
    approval = SignedMessage.sign(new_approval(request=first, approver="carol"), env.people["carol"])
    env.client.approve(first_id, approval)
    with pytest.raises(CustodyError, match="replayed"):
        env.client.approve(first_id, approval)
    with pytest.raises(CustodyError, match="transplanted"):
        env.client.approve(second_id, approval)
    assert env.status(second_id)["approvals"] == []


def test_forged_signatures_and_an_impostor_host(env: CustodyEnv) -> None:
    host, request, request_id = env.request()
    forged = SignedMessage.sign(new_approval(request=request, approver="carol"), env.people["bob"])
    with pytest.raises(MessageError, match="400.*signed by key"):
        env.client.approve(request_id, forged)
    genuine = SignedMessage.sign(new_approval(request=request, approver="carol"), env.people["carol"])
    altered = SignedMessage({**genuine.payload, "reason": "added later"}, genuine.signer, genuine.signature)
    with pytest.raises(MessageError, match="does not verify"):
        env.client.approve(request_id, altered)
    env.approve(request, "bob")
    env.approve(request, "carol")
    impostor = HostSession("gpu-01", Signer.generate("ed25519"))
    with pytest.raises(MessageError, match="only the requesting host"):
        env.client.release(request_id, impostor.fetch(request_id))
    assert env.released_entries() == 0
    assert env.client.release(request_id, host.fetch(request_id))["approvers"] == ["bob", "carol"]


def test_self_approval_too_few_no_custodian_and_approvers_below_the_models_tier(env: CustodyEnv) -> None:
    host, request, request_id = env.request("bob")
    with pytest.raises(PolicyError, match="403.*cannot approve their own request"):
        env.approve(request, "bob")
    env.approve(request, "carol")
    with pytest.raises(PolicyError, match="403.*1 of 2 required approvals"):
        env.client.release(request_id, host.fetch(request_id))
    host2, request2, request2_id = env.request("alice")
    env.approve(request2, "bob")
    env.approve(request2, "erin")
    with pytest.raises(PolicyError, match="no SenL-5 custodian"):
        env.client.release(request2_id, host2.fetch(request2_id))
    # A SenL-1 person is no approver for a SenL-3 model, custodian or not beside them.
    lou = env.admin.enrol([("lou", 1)])["lou"]
    _, request3, request3_id = env.request("alice")
    approval = SignedMessage.sign(new_approval(request=request3, approver="lou"), lou)
    with pytest.raises(PolicyError, match="approver lou is SenL-1; the model needs SenL-3"):
        env.client.approve(request3_id, approval)
    assert env.released_entries() == 0
    assert env.status(request2_id)["state"] == "pending"


def test_suspended_or_lapsed_people(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    signal = admin.raise_signal("carol", SignalKind.FINANCIAL)
    env.admin(signal, "otto")  # one officer suspends
    with pytest.raises(PolicyError, match="approver carol has no access: suspended"):
        env.client.release(request_id, host.fetch(request_id))
    with pytest.raises(PolicyError, match="403.*carol has no access"):
        env.approve(env.request()[1], "carol")
    clearing = admin.clear_signal("carol", signal.change["signal_id"], reviewer="dave")
    with pytest.raises(CustodyError, match="needs 2 distinct officers"):
        env.admin(clearing, "otto")  # clearing grants access back: two officers
    env.admin(clearing)
    from datetime import date

    env.admin(admin.record_vetting("alice", date(2020, 1, 1)))
    with pytest.raises(PolicyError, match="requester alice has no access: overdue"):
        env.client.release(request_id, host.fetch(request_id))
    with pytest.raises(PolicyError, match="403.*alice has no access"):
        env.request("alice")
    assert env.released_entries() == 0


def test_the_access_agreement_configured_in_serve_is_enforced(env: CustodyEnv) -> None:
    nora = env.admin.enrol([("nora", 4)], agreement=None)["nora"]
    env.people["nora"] = nora
    with pytest.raises(PolicyError, match="nora has no access: has not signed the current access agreement"):
        env.request("nora")
    _, request, _ = env.request("alice")
    with pytest.raises(PolicyError, match="has not signed the current access agreement"):
        env.approve(request, "nora")


def test_denial_blocks(env: CustodyEnv) -> None:
    host, request, request_id = env.approved()
    env.approve(request, "dave", "deny")
    with pytest.raises(PolicyError, match="denied by dave"):
        env.client.release(request_id, host.fetch(request_id))


def test_expired_request(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    real = env.services.custody.clock
    env.services.custody.clock = lambda: real() + timedelta(hours=2)
    try:
        with pytest.raises(CustodyError, match="expired"):
            env.client.release(request_id, host.fetch(request_id))
    finally:
        env.services.custody.clock = real
    assert env.released_entries() == 0


def test_requests_name_an_enrolled_active_host(env: CustodyEnv) -> None:
    laptop = HostSession("gpu-01", Signer.generate("ed25519"))  # the enrolled name, the requester's own key
    with pytest.raises(MessageError, match="names host key"):
        env.request(host=laptop)
    with pytest.raises(MessageError, match="no host 'laptop' is enrolled"):
        env.request(host=HostSession("laptop", Signer.generate("ed25519")))
    host, _, request_id = env.approved()
    env.admin(admin.retire_host("gpu-01", "decommissioned"), "olga")  # one officer retires
    with pytest.raises(PolicyError, match="host 'gpu-01' is retired"):
        env.client.release(request_id, host.fetch(request_id))
    with pytest.raises(PolicyError, match="retired"):
        env.request()
    assert env.released_entries() == 0


def test_two_hosts_race_for_one_release(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def race() -> None:
        fetch = host.fetch(request_id)
        barrier.wait()
        try:
            outcomes.append(env.client.release(request_id, fetch)["wrapped_key"])
        except ReleaseConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = {o for o in outcomes if isinstance(o, str)}
    assert len(keys) == 1, outcomes  # whoever got a key got the same one
    assert env.released_entries() == 1


def test_a_repeated_fetch_gets_the_same_key_and_a_captured_fetch_locks_nobody_out(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    captured = host.fetch(request_id)
    first = env.client.release(request_id, captured)  # a third party replays it first: it learns nothing
    with pytest.raises(MessageError, match="replayed"):
        env.client.release(request_id, captured)
    again = env.client.release(request_id, host.fetch(request_id))
    assert again == first
    host.open_release(again).close()
    assert env.released_entries() == 1


def test_load_reports_are_the_hosts_and_once_per_release(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    bundle = env.client.release(request_id, host.fetch(request_id))
    report = host.loaded(bundle)
    env.client.loaded(request_id, report)
    with pytest.raises(AlreadyExistsError, match="already reported"):
        env.client.loaded(request_id, report)
    with pytest.raises(AlreadyExistsError, match="already reported"):
        env.client.loaded(request_id, host.loaded(bundle))
    other_host, _, other_id = env.approved()
    other = env.client.release(other_id, other_host.fetch(other_id))
    wrong_nonce = new_load_report(other_id, env.model_id, "gpu-01", bundle["release_nonce"], host.identity)
    with pytest.raises(MessageError, match="another release's nonce"):
        env.client.loaded(other_id, wrong_nonce)
    forged = new_load_report(other_id, env.model_id, "gpu-01", other["release_nonce"], Signer.generate("ed25519"))
    with pytest.raises(MessageError, match="only the released host"):
        env.client.loaded(other_id, forged)
    assert len(env.services.ledger.query(type="model.loaded")) == 1


def test_fail_closed_and_deliver_later(env: CustodyEnv) -> None:
    host, _, request_id = env.approved()
    providers = env.services.custody.providers
    env.services.custody.providers = []
    with pytest.raises(UnavailableError, match="503.*no key provider"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.status(request_id)["state"] == "pending" and env.released_entries() == 0
    env.services.custody.providers = providers
    env.keyring.close()
    with pytest.raises(UnavailableError, match="503.*release logged .* could not be delivered"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.status(request_id)["state"] == "released" and env.released_entries() == 1
    env.services.custody.providers = [LocalKeyring.open(env.sealed.parent / "keys", passphrase=PASSPHRASE)]
    host.open_release(env.client.release(request_id, host.fetch(request_id))).close()
    assert env.released_entries() == 1
    host2, _, second = env.approved()
    env.services.ledger.store.close()
    with pytest.raises(UnavailableError, match="503.*ledger"):
        env.client.release(second, host2.fetch(second))
    assert env.status(second)["state"] == "pending"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/custody/requests", b"{", 400, "not valid JSON"),
        ("/v1/custody/requests", b'{"payload": {}, "signer": "x"}', 400, "exactly payload"),
        ("/v1/custody/requests", b"x" * 70_000, 413, "larger than"),
        ("/v1/custody/requests", b'{"payload": {"a": 1e400}, "signer": "a", "signature": ""}', 400, "canonical"),
        ("/v1/custody/requests", b"[" * 10_000, 400, "not valid JSON"),
        (
            "/v1/custody/requests",
            json.dumps({"payload": {"type": "strongroom.release-request/v2"}, "signer": "a", "signature": ""}).encode(),
            400,
            "missing field",
        ),
        ("/v1/admin/changes", b'{"payload": {}, "signatures": []}', 400, "exactly change and openings"),
        ("/v1/admin/changes", b'{"change": {"payload": {}, "signatures": []}, "openings": {}}', 400, "a list of 1"),
        ("/v1/custody/requests/zz/release", b'{"payload": {}, "signer": "a", "signature": ""}', 400, "missing field"),
    ],
)
def test_malformed_bodies(env: CustodyEnv, path: str, body: bytes, status: int, message: str) -> None:
    reply = httpx.post(env.url + path, content=body)
    assert reply.status_code == status and message in reply.text, reply.text


def test_unknown_fields_and_unknown_things(env: CustodyEnv) -> None:
    host = env.session()
    payload = {**host.request_payload(env.model_id, "evaluation", "alice"), "priority": "urgent"}
    with pytest.raises(MessageError, match="unknown field 'priority'"):
        env.client.submit_request(SignedMessage.sign(payload, env.people["alice"]))
    payload = host.request_payload("blake3:" + "00" * 32, "evaluation", "alice")
    with pytest.raises(NotFoundError, match="404.*not registered"):
        env.client.submit_request(SignedMessage.sign(payload, env.people["alice"]))
    with pytest.raises(NotFoundError, match="404.*no release request"):
        env.status("ab" * 32)
    with pytest.raises(NotFoundError, match="404.*no host 'nowhere'"):
        env.client.read(new_read_query(OFFICER_READER, "host:nowhere", env.officers["olga"]))


def test_release_reports_its_server_time_and_closes_the_request(env: CustodyEnv) -> None:
    host, request, request_id = env.approved()
    reply = httpx.post(
        f"{env.url}/v1/custody/requests/{request_id}/release", json=host.fetch(request_id).to_json(), timeout=30
    )
    assert reply.status_code == 200
    name, _, duration = reply.headers["server-timing"].partition(";dur=")
    assert name == "release" and float(duration) > 0
    assert env.status(request_id)["state"] == "released"
    late = SignedMessage.sign(new_approval(request=request, approver="dave"), env.people["dave"])
    with pytest.raises(CustodyError, match="is released, not pending"):
        env.client.approve(request_id, late)


def test_a_crash_mid_release_is_settled_by_the_ledger_at_start(env: CustodyEnv) -> None:
    """A request left ``releasing`` goes back to pending without a key.released entry, else becomes released
    (and its host's next fetch delivers the key)."""
    custody = env.services.custody
    store = custody.store
    _, _, never_logged = env.approved()
    host, _, logged = env.approved()
    env.client.release(logged, host.fetch(logged))
    # The crash: the first was claimed and nothing more; the second was logged but its record never written.
    for request_id in (never_logged, logged):
        store.write(lambda tx, r=request_id: tx.set_state(r, RELEASING))
    store.write(lambda tx: tx.execute("DELETE FROM custody_releases WHERE request_id = ?", (logged,)))

    restarted = CustodyService(store, env.services.ledger, custody.service_key, custody.providers)
    assert restarted.settled == {never_logged: "pending", logged: "released"}
    assert restarted.status(never_logged)["state"] == "pending"
    assert restarted.status(logged)["state"] == "released"
    bundle = restarted.release(logged, host.fetch(logged))
    host.open_release(bundle).close()
    assert CustodyService(store, env.services.ledger, custody.service_key, custody.providers).settled == {}


def test_a_small_order_host_key_is_refused_at_the_request(env: CustodyEnv) -> None:
    """Nothing can be sealed to a small-order X25519 point; refused before anything is recorded or logged."""
    from strongroom.custody.protocol import new_request

    point_of_order_8 = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
    for ephemeral in (bytes(32), point_of_order_8):
        payload = new_request(
            model_id=env.model_id,
            purpose="eval",
            requester="alice",
            host_id="gpu-01",
            host_identity=env.hosts["gpu-01"],
            host_ephemeral=ephemeral,
        )
        with pytest.raises(MessageError, match="small order"):
            env.client.submit_request(SignedMessage.sign(payload, env.people["alice"]))
    assert env.pending_for("bob") == []
