"""Egress control and location as release conditions (issues 15 and 17): a model's policy can require a
fresh egress checkpoint and a fresh IN verdict for the host; only entries by appenders the officers enrolled
count; landmarks are enrolled by the officers' quorum; replay and the auditor decide the same way."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.errors import MessageError, NotAuthorisedError, NotFoundError, PolicyError
from strongroom.custody.policy import EgressRule, LocationRule, ModelPolicy
from strongroom.custody.projection import EGRESS_TYPES, MAX_LAG, AppenderRecord, Projection
from strongroom.custody.service import CustodyService
from strongroom.egress.records import CHECKPOINT, time_text
from strongroom.geo.landmarks import Landmark
from strongroom.ledger.entries import build_entry
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv
from tests.custody.ties import checkpoint, enrol_gateway, enrol_landmarks, enrol_verifier, verdict


def refused(env: CustodyEnv, request_id: str, match: str) -> None:
    host = env.session()
    with pytest.raises(PolicyError, match=match):
        env.client.release(request_id, host.fetch(request_id))


def restarted_state_is_clean(env: CustodyEnv) -> list[str]:
    """Restart and audit: no problems, every release verified; returns why the auditor ignored entries."""
    custody = env.services.custody
    again = CustodyService(custody.store, env.services.ledger, custody.service_key, custody.providers)
    assert not again.state.problems
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems
    assert all(r["verified"] for r in audit.releases)
    return [i["reason"] for i in audit.ignored]


def test_policy_rules_round_trip_and_refuse_nonsense() -> None:
    model = "blake3:" + "a" * 64
    policy = ModelPolicy(model, 3, 2, egress=EgressRule(120), location=LocationRule(("CA", "US"), 3600))
    assert ModelPolicy.from_rules(model, policy.rules()) == policy
    assert ModelPolicy(model, 3).rules() == {"required_tier": 3, "approvals": 2, "delay_seconds": 0}
    for rules in (
        {"required_tier": 3, "egress": {"max_checkpoint_age_s": 5}},
        {"required_tier": 3, "egress": {"max_age": 60}},
        {"required_tier": 3, "location": {"countries": []}},
        {"required_tier": 3, "location": {"countries": ["us"]}},
        {"required_tier": 3, "location": {"countries": ["US", "CA"]}},
        {"required_tier": 3, "location": {"countries": ["US"], "max_age_s": 10}},
    ):
        with pytest.raises(MessageError, match="policy"):
            ModelPolicy.from_rules(model, rules)


def test_location_policy_refuses_each_missing_or_wrong_verdict_and_releases_on_a_fresh_in(env: CustodyEnv) -> None:
    one = Landmark("ict-9", Signer.generate("ed25519").verifier, 37.0, -97.0, "GNSS")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.admin(admin.enrol_landmark(one.enrolment_body()), "olga")
    digest = enrol_landmarks(env.admin)
    location = LocationRule(("CA", "US"), 3600)
    env.admin(admin.change_policy(ModelPolicy(env.model_id, 3, 2, location=location)))
    _, _, request_id = env.approved()
    refused(env, request_id, "location: host gpu-01 has no location verdict")
    # a verdict by a key the ledger lets append but no officers enrolled counts for nothing
    rogue = enrol_verifier(lambda *a, **k: {}, env.data, env.url)
    rogue.append("geo.verdict", verdict("gpu-01", digest))
    refused(env, request_id, "has no location verdict")
    verifier = enrol_verifier(env.admin, env.data, env.url)
    cases = [
        (verdict("gpu-01", digest, age_s=7200), "latest verdict is stale"),
        (verdict("gpu-01", digest, "INCONCLUSIVE"), "INCONCLUSIVE: not shown to be in CA, US"),
        (verdict("gpu-01", digest, "INCONSISTENT"), "INCONSISTENT"),
        (verdict("gpu-01", digest, country="MX"), r"placed IN\(MX\), not in an allowed country"),
        (verdict("gpu-01", "sha256:" + "0" * 64), "not the set the officers enrolled"),
    ]
    for body, reason in cases:
        verifier.append("geo.verdict", body)
        refused(env, request_id, reason)
        if reason == "INCONSISTENT":  # an alarm: it stays open under later verdicts until officers clear it
            verdicts = env.services.ledger.query(type="geo.verdict")
            (alarm,) = [e for e in verdicts if e[1].body["verdict"] == "INCONSISTENT"]
    verifier.append("geo.verdict", verdict("gpu-01", digest))
    refused(env, request_id, f"open INCONSISTENT verdict \\(entry {alarm[0]}\\)")
    clearance = admin.clear_location_alarm("gpu-01", alarm[0], "a landmark's clock was off; re-measured")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers, signed by 1"):
        env.admin(clearance, "olga")
    with pytest.raises(NotFoundError, match="no open INCONSISTENT verdict at entry"):
        env.admin(admin.clear_location_alarm("gpu-01", alarm[0] - 1, "not that one"))
    env.admin(clearance)
    with pytest.raises(NotFoundError, match="no open INCONSISTENT verdict"):
        env.admin(clearance)  # cleared already
    assert env.status(request_id)["ready"]
    bundle = env.client.release(request_id, env.session().fetch(request_id))
    assert bundle["approvers"] == ["bob", "carol"]
    restarted_state_is_clean(env)
    # one officer may flag a landmark (it only takes away): the set changes, the verdict no longer counts
    env.admin(admin.change_landmark("ict-1", "flag", "RTTs disagree with its survey"), "otto")
    _, _, again = env.approved()
    refused(env, again, "not the set the officers enrolled")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.admin(admin.change_landmark("ict-1", "clear"), "otto")


def test_egress_policy_counts_only_the_hosts_own_enrolled_gateway(env: CustodyEnv) -> None:
    env.admin(admin.change_policy(ModelPolicy(env.model_id, 3, 2, egress=EgressRule(300))))
    _, _, request_id = env.approved()
    refused(env, request_id, "egress: host gpu-01 has no gateway checkpoint")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        enrol_gateway(lambda p, *n: env.admin(p, "olga"), env.data, "gpu-01", env.url)
    env.hosts["gpu-02"] = env.admin.enrol_host("gpu-02")
    other = enrol_gateway(env.admin, env.data, "gpu-02", env.url)
    other.append(CHECKPOINT, checkpoint("gpu-01"))  # another host's gateway speaking for gpu-01: ignored
    refused(env, request_id, "has no gateway checkpoint")
    assert any("gateway of host gpu-02, not gpu-01" in i.reason for i in env.services.custody.state.projection.ignored)
    gateway = enrol_gateway(env.admin, env.data, "gpu-01", env.url)
    gateway.append(CHECKPOINT, checkpoint("gpu-01", installed=False))
    refused(env, request_id, "shows no kernel rules installed")
    env.admin(admin.retire_appender("gw-gpu-01", "key rotated"), "otto")  # one officer retires a gateway
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))  # the retired key's checkpoint does not count
    refused(env, request_id, "shows no kernel rules installed")
    fresh = enrol_gateway(lambda p, *n: env.admin(_renamed(p, "gw-gpu-01b")), env.data, "gpu-01", env.url)
    fresh.append(CHECKPOINT, checkpoint("gpu-01"))
    assert env.client.release(request_id, env.session().fetch(request_id))["approvers"] == ["bob", "carol"]
    fresh.append(CHECKPOINT, checkpoint("gpu-01"), when=time.time() + 3600)  # a gateway dating ahead
    _, _, again = env.approved()
    refused(env, again, "last checkpoint is dated .* in the future")
    ignored = restarted_state_is_clean(env)
    assert len(ignored) == 2
    assert "gateway of host gpu-02, not gpu-01" in ignored[0] and "retired at entry" in ignored[1]


def _renamed(proposal: admin.Proposal, name: str) -> admin.Proposal:
    return admin.Proposal(proposal.action, {**proposal.change, "appender": name})


def test_the_projection_keeps_a_bounded_window_and_answers_as_of_any_point_in_it() -> None:
    """Thousands of checkpoints: memory stays within MAX_LAG entries, and a release that read the log a
    moment earlier than another one still gets the answer as of its own read."""
    gateway = Signer.generate("ed25519")
    projection = Projection()
    projection.appenders["gw"] = AppenderRecord("gw", gateway.verifier, tuple(sorted(EGRESS_TYPES)), "h1", 0)
    start = time.time() - 10_000
    for index in range(1, 3001):
        body = checkpoint("h1", used=index, now=start + index)
        projection.add(index, build_entry(CHECKPOINT, body, gateway, time_text(start + index)))
        if index % 500 == 0:
            seen = index + 1
            assert projection.egress("h1", datetime.now(UTC), seen).bytes_used == index
            earlier = seen - 400  # a concurrent release that read 400 entries before
            assert projection.egress("h1", datetime.now(UTC), earlier).bytes_used == earlier - 1
            assert len(projection.window) <= MAX_LAG + 1
    with pytest.raises(MessageError, match="more than 1000 entries behind"):
        projection.egress("h1", datetime.now(UTC), 3001 - MAX_LAG - 10)
