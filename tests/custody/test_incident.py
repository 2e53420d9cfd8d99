"""Incidents at the custody gate: one officer freezes every release in scope at once; lifting takes the
officers' quorum and a custodian; playbook steps are acknowledged by whoever holds their role; replay and
the auditor see the same freeze."""

from __future__ import annotations

import pytest

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.errors import AlreadyExistsError, MessageError, NotAuthorisedError, NotFoundError, PolicyError
from strongroom.custody.protocol import OFFICER_READER, new_step_ack
from strongroom.custody.service import CustodyService
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv


def declare(env: CustodyEnv, scope: str) -> str:
    proposal = admin.declare_incident(scope, "confirmed", summary="weights seen on a paste site")
    env.admin(proposal, "otto")  # one officer suffices: it only takes access away
    return str(proposal.change["incident"])


def test_one_officer_freezes_everything_in_scope_at_once(env: CustodyEnv) -> None:
    env.hosts["gpu-02"] = env.admin.enrol_host("gpu-02")
    host, request, request_id = env.request()
    env.approve(request, "bob")
    other_host = env.session("gpu-02")
    _, other, other_id = env.request(host=other_host)
    declare(env, "host:gpu-01")
    with pytest.raises(PolicyError, match="frozen by incident .* scope host:gpu-01"):
        env.approve(request, "carol")  # pending requests are frozen
    with pytest.raises(PolicyError, match="frozen by incident"):
        env.request()
    env.approve(other, "bob")
    env.approve(other, "carol")
    env.client.release(other_id, other_host.fetch(other_id))  # another host is out of scope
    everything = declare(env, "all")
    with pytest.raises(PolicyError, match=f"frozen by incident {everything}"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.released_entries() == 1


def test_lifting_needs_the_quorum_and_a_custodian(env: CustodyEnv) -> None:
    incident = declare(env, f"model:{env.model_id}")
    lift = admin.lift_incident(incident, "contained; key rotated")
    with pytest.raises(NotAuthorisedError, match="needs an active SenL-5 custodian"):
        env.admin(lift, "olga", "oscar")
    officer_one = admin.propose(lift, [env.officers["olga"], env.people["carol"]])
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.client.admin(officer_one)
    with pytest.raises(NotAuthorisedError, match="not an officer"):  # bob is no custodian
        env.client.admin(admin.propose(lift, [env.officers["olga"], env.officers["oscar"], env.people["bob"]]))
    env.client.admin(admin.propose(lift, [env.officers["olga"], env.officers["oscar"], env.people["carol"]]))
    with pytest.raises(AlreadyExistsError, match="already lifted"):
        env.client.admin(admin.propose(lift, [env.officers["olga"], env.officers["oscar"], env.people["carol"]]))
    host, _, request_id = env.approved()
    assert env.client.release(request_id, host.fetch(request_id))["approvers"] == ["bob", "carol"]


def test_steps_are_acknowledged_by_their_role_holders(env: CustodyEnv) -> None:
    incident = declare(env, "all")
    receipt = env.client.acknowledge(
        new_step_ack(incident, "freeze-releases", "security-officer", OFFICER_READER, env.officers["olga"])
    )
    assert receipt["index"] > 0
    env.client.acknowledge(new_step_ack(incident, "confirm-shares-held", "custodian", "carol", env.people["carol"]))
    with pytest.raises(NotAuthorisedError, match="bob is not an active SenL-5 custodian"):
        env.client.acknowledge(new_step_ack(incident, "confirm-shares-held", "custodian", "bob", env.people["bob"]))
    with pytest.raises(NotAuthorisedError, match="acknowledged with an officer's key"):
        env.client.acknowledge(new_step_ack(incident, "freeze-releases", "security-officer", "bob", env.people["bob"]))
    with pytest.raises(MessageError, match="signed by key"):
        env.client.acknowledge(new_step_ack(incident, "x", "operator", "bob", Signer.generate("ed25519")))
    ack = new_step_ack(incident, "notify-executive", "operator", "bob", env.people["bob"])
    env.client.acknowledge(ack)
    with pytest.raises(MessageError, match="replayed"):
        env.client.acknowledge(ack)
    with pytest.raises(NotFoundError, match="no incident"):
        env.client.acknowledge(new_step_ack("00" * 8, "x", "operator", "bob", env.people["bob"]))
    steps = env.services.custody.state.incidents[incident].steps
    assert [(s["step"], s["actor"]) for s in steps] == [
        ("freeze-releases", OFFICER_READER),
        ("confirm-shares-held", "carol"),
        ("notify-executive", "bob"),
    ]


def test_replay_and_the_auditor_see_the_same_freeze(env: CustodyEnv) -> None:
    incident = declare(env, "person:alice")
    custody = env.services.custody
    restarted = CustodyService(custody.store, env.services.ledger, custody.service_key, custody.providers)
    assert restarted.state.incidents[incident].open and not restarted.state.problems
    assert restarted.state.freezes(env.model_id, "gpu-01", ("alice",))
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems


def test_the_auditor_names_a_release_made_through_a_freeze(env: CustodyEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate that ignored the freeze (a bug, or a tampered server) logs a release: replay refuses it."""
    host, _, request_id = env.approved()
    declare(env, "all")
    custody = env.services.custody
    monkeypatch.setattr(custody.state, "freezes", lambda *args: [])
    index = env.client.release(request_id, host.fetch(request_id))["ledger"]["index"]
    monkeypatch.undo()
    audit = audit_custody(env.services.ledger.scan())
    assert [p.index for p in audit.problems] == [index]
    assert "frozen by incident" in audit.problems[0].reason
    restarted = CustodyService(custody.store, env.services.ledger, custody.service_key, custody.providers)
    assert [p.index for p in restarted.state.problems] == [index]
