"""Containment over the real custody server: each contain step acts, the ledger records it and its
acknowledgement, and a step repeated after a crash is not done twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from strongroom.custody import admin
from strongroom.custody.errors import NotAuthorisedError, PolicyError
from strongroom.custody.protocol import OFFICER_READER
from strongroom.egress.records import time_text
from strongroom.egress.state import EgressState
from strongroom.incident.contain import Targets, alarm_id, run_step, signal_id
from strongroom.incident.remote import RemotePort, responder_appender
from strongroom.ledger.entries import build_entry
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv


class Crash(Exception):
    pass


class CrashingPort(RemotePort):
    """The responder's machine dies after ``budget`` changes reached the server."""

    def __init__(self, *args: Any, budget: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget

    def _spend(self) -> None:
        if self.budget == 0:
            raise Crash()
        self.budget -= 1

    def admin(self, proposal: admin.Proposal) -> dict[str, Any]:
        self._spend()
        return super().admin(proposal)

    def alarm(self, host: str, models: list[str], alarm_id: str, detail: dict[str, Any]) -> dict[str, Any]:
        self._spend()
        return super().alarm(host, models, alarm_id, detail)

    def acknowledge(self, incident: str, step: str) -> dict[str, Any]:
        self._spend()
        return super().acknowledge(incident, step)


def count(env: CustodyEnv, entry_type: str, **match: str) -> int:
    return sum(all(e.body.get(k) == v for k, v in match.items()) for _, e in env.services.ledger.query(type=entry_type))


def port(
    env: CustodyEnv, role: str = "security-officer", budget: int = -1, responder: Signer | None = None
) -> RemotePort:
    kwargs: dict[str, Any] = dict(
        officers=[env.officers["otto"]],
        ack_signer=env.officers["otto"] if role == "security-officer" else env.people["bob"],
        ack_actor=OFFICER_READER if role == "security-officer" else "bob",
        ack_role=role,
        responder=responder,
    )
    return CrashingPort(env.url, budget=budget, **kwargs) if budget >= 0 else RemotePort(env.url, **kwargs)


def declare(env: CustodyEnv) -> str:
    proposal = admin.declare_incident(f"model:{env.model_id}", "confirmed", summary="weights on a paste site")
    env.admin(proposal, "otto")
    return str(proposal.change["incident"])


def test_steps_repeated_after_a_crash_are_not_done_twice(env: CustodyEnv) -> None:
    env.hosts["gpu-02"] = env.admin.enrol_host("gpu-02")
    incident = declare(env)
    targets = Targets(hosts=("gpu-01", "gpu-02"), people=("alice", "erin"))
    with pytest.raises(Crash):
        run_step(port(env, budget=1), incident, "retire-hosts", targets)  # gpu-01 retired, then the crash
    assert count(env, "host.changed", change="retire") == 1
    again = run_step(port(env), incident, "retire-hosts", targets)
    assert again.done == ["host.retire gpu-02"] and again.acknowledged
    assert count(env, "host.changed", change="retire") == 2
    assert run_step(port(env), incident, "retire-hosts", targets).already  # acknowledged: nothing more
    with pytest.raises(Crash):
        run_step(port(env, budget=2), incident, "suspend-people", targets)  # both signalled, ack lost
    assert run_step(port(env), incident, "suspend-people", targets).done == []  # only the acknowledgement
    assert count(env, "person.changed", change="signal") == 2
    state = env.services.custody.state
    assert all(signal_id(incident) in state.people.people[p].signals for p in ("alice", "erin"))
    run_step(port(env), incident, "revoke-keys", targets)
    assert count(env, "person.changed", change="offboard") == 2
    assert count(env, "host.changed", change="retire") == 2  # already retired: not again
    steps = [s["step"] for s in state.incidents[incident].steps]
    assert steps == ["retire-hosts", "suspend-people", "revoke-keys"]
    now = datetime.now(UTC)
    assert not any(state.people.standing(p, now).active for p in ("alice", "erin"))  # contained, beyond the freeze
    assert all(state.hosts.hosts[h].retired for h in ("gpu-01", "gpu-02"))


def test_the_egress_alarm_blocks_the_host_and_is_raised_once(env: CustodyEnv) -> None:
    incident = declare(env)
    responder = Signer.generate("ed25519")
    responder_appender(env.data, "incident", responder.verifier)
    targets = Targets(hosts=("gpu-01",))
    with pytest.raises(Crash):
        run_step(port(env, "operator", budget=1, responder=responder), incident, "egress-alarm", targets)
    run_step(port(env, "operator", responder=responder), incident, "egress-alarm", targets)
    alarms = env.services.ledger.query(type="egress.alarm")
    assert [e.body["alarm_id"] for _, e in alarms] == [alarm_id(incident, "gpu-01")]
    now = time.time()
    checkpoint = build_entry("egress.checkpoint", {
        "host": "gpu-01", "period_start": time_text(now - 60), "period_seconds": 86400, "interval_seconds": 60,
        "bytes_used": 0, "budget_bytes": 10**9, "quota_bytes": 10**9, "rules_installed": True,
        "rules_digest": "sha256:" + "ab" * 32, "meters": {},
    }, Signer.generate("ed25519"), time_text(now - 30))  # fmt: skip
    egress = EgressState()
    egress.apply(checkpoint, 0)
    assert egress.status("gpu-01", now).refusal() is None  # a healthy host, until the alarm
    egress.apply_all(list(alarms))
    status = egress.status("gpu-01", now)
    assert [a.kind for a in status.open_alarms] == ["incident"]
    assert "open egress alarm(s): incident" in (status.refusal() or "")


def test_contain_steps_need_an_officer(env: CustodyEnv) -> None:
    incident = declare(env)
    stranger = RemotePort(
        env.url, officers=[Signer.generate("ed25519")], ack_signer=env.people["bob"], ack_actor="bob",
        ack_role="operator",
    )  # fmt: skip
    with pytest.raises(NotAuthorisedError):
        run_step(stranger, incident, "retire-hosts", Targets(hosts=("gpu-01",)))
    assert count(env, "host.changed", change="retire") == 0


def test_the_responders_alarm_blocks_releases_at_the_gate(env: CustodyEnv) -> None:
    """With the responder's key enrolled for the host (egress.alarm only), the contain step's alarm stops
    releases to that host under an egress-conditioned policy, until two officers clear it."""
    from strongroom.custody.policy import EgressRule, ModelPolicy
    from strongroom.egress.records import CHECKPOINT
    from tests.custody.ties import checkpoint, enrol_gateway

    env.admin(admin.change_policy(ModelPolicy(env.model_id, 3, 2, egress=EgressRule(300))))
    gateway = enrol_gateway(env.admin, env.data, "gpu-01", env.url)
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))
    responder = Signer.generate("ed25519")
    responder_appender(env.data, "incident", responder.verifier)
    env.admin(admin.enrol_appender("incident-gpu-01", responder.verifier.pem().decode(), ["egress.alarm"], "gpu-01"))
    proposal = admin.declare_incident("person:dave", "suspected")  # a scope that does not cover this release
    env.admin(proposal, "otto")
    incident = str(proposal.change["incident"])
    run_step(port(env, "operator", responder=responder), incident, "egress-alarm", Targets(hosts=("gpu-01",)))
    host, _, request_id = env.approved()
    with pytest.raises(PolicyError, match="open egress alarm"):
        env.client.release(request_id, host.fetch(request_id))
    env.admin(admin.clear_egress_alarm("gpu-01", alarm_id(incident, "gpu-01"), "contained"))
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))
    assert env.client.release(request_id, host.fetch(request_id))["approvers"] == ["bob", "carol"]
