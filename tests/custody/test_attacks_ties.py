"""Egress and location at the gate of a real ``strongroom serve`` process (issues 15 and 17): a host whose
egress alarm is open, whose budget is spent or whose checkpoint is stale gets no key; one officer cannot
clear an alarm; and a release the service logged without the checkpoint or the verdict its policy requires
is named by the outside auditor."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.custody import admin
from strongroom.custody.decision import Decision
from strongroom.custody.envelope import SignedMessage, parse_time
from strongroom.custody.errors import (
    AlreadyExistsError,
    NotAuthorisedError,
    NotFoundError,
    PolicyError,
    UnverifiableLedgerError,
)
from strongroom.custody.policy import EgressRule, LocationRule, ModelPolicy
from strongroom.custody.protocol import Approval, new_approval
from strongroom.custody.state import RegisteredModel, release_body
from strongroom.egress.records import ALARM, CHECKPOINT, EXHAUSTED, EgressLedger, time_text
from strongroom.ledger.entries import make_entry
from strongroom.seal import SealedModel
from strongroom.signing import Signer
from tests.custody.conftest import PEOPLE, make_officers
from tests.custody.test_attacks import DIGEST, Deployment
from tests.custody.ties import PERIOD, alarm, checkpoint, enrol_gateway, enrol_landmarks, enrol_verifier, verdict


@pytest.fixture
def guarded(tmp_path: Path, sealed_minilm: tuple[Path, Path, str]) -> Iterator[tuple[Deployment, EgressLedger]]:
    """A served deployment whose model requires egress control (checkpoints at most 300 s old), with host
    gpu-01's gateway enrolled by two officers."""
    keys, sealed, model_id = sealed_minilm
    data = tmp_path / "srv"
    officers = make_officers(data)
    found = Deployment(data, keys, sealed, model_id, officers, Signer.generate("ed25519"))
    found.start()
    with SealedModel.inspect(sealed) as model:
        found.admin(admin.register_model(ModelPolicy(model_id, 3, 2, egress=EgressRule(300)), model.key))
    found.people = found.admin.enrol(PEOPLE, agreement=DIGEST)
    found.hosts["gpu-01"] = found.admin.enrol_host("gpu-01")
    gateway = enrol_gateway(found.admin, data, "gpu-01", found.url)
    yield found, gateway
    gateway.close()
    found.stop()


def approved(deployment: Deployment) -> str:
    _, request, request_id = deployment.request()
    deployment.approve(request, "bob")
    deployment.approve(request, "carol")
    return request_id


def fetch(deployment: Deployment, request_id: str) -> dict[str, object]:
    from strongroom.custody.host import HostSession

    host = HostSession("gpu-01", deployment.hosts["gpu-01"])
    return deployment.client.release(request_id, host.fetch(request_id))


def test_a_host_whose_alarm_is_open_gets_no_key_until_two_officers_clear_it(
    guarded: tuple[Deployment, EgressLedger],
) -> None:
    deployment, gateway = guarded
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))
    request_id = approved(deployment)
    alarm_id = "3f" * 16
    gateway.append(ALARM, alarm("gpu-01", deployment.model_id, alarm_id, "meter-gap"))
    with pytest.raises(PolicyError, match=f"open egress alarm {alarm_id[:12]} \\(meter-gap\\)"):
        fetch(deployment, request_id)
    clearance = admin.clear_egress_alarm("gpu-01", alarm_id, "gap explained: a health check bypassed the gateway")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers, signed by 1"):
        deployment.admin(clearance, "olga")
    with pytest.raises(NotFoundError, match="no egress alarm"):
        deployment.admin(admin.clear_egress_alarm("gpu-01", "00" * 16, "no such alarm"))
    with pytest.raises(PolicyError, match="open egress alarm"):
        fetch(deployment, request_id)
    deployment.admin(clearance, "olga", "oscar")
    with pytest.raises(AlreadyExistsError, match="already cleared"):
        deployment.admin(clearance, "oscar", "otto")
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))
    assert fetch(deployment, request_id)["approvers"] == ["bob", "carol"]
    deployment.stop()  # the clearance and the release replay after a restart, and pass the outside audit
    deployment.start()
    audit = deployment.verify_custody()
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert [r["verified"] for r in json.loads(audit.stdout)["custody"]["releases"]] == [True]


def test_a_spent_budget_or_a_stale_checkpoint_gets_no_key(guarded: tuple[Deployment, EgressLedger]) -> None:
    deployment, gateway = guarded
    request_id = approved(deployment)
    with pytest.raises(PolicyError, match="egress: host gpu-01 has no gateway checkpoint"):
        fetch(deployment, request_id)
    gateway.append(CHECKPOINT, checkpoint("gpu-01"), when=time.time() - 900)
    with pytest.raises(PolicyError, match=r"last checkpoint is stale: 9\d\ds old \(at most 300s\)"):
        fetch(deployment, request_id)
    gateway.append(CHECKPOINT, checkpoint("gpu-01", used=1_000_000, exhausted=True))
    with pytest.raises(PolicyError, match="egress budget is spent for this period"):
        fetch(deployment, request_id)
    # the kernel's meter can say so too, in its own entry, while the gateway's checkpoint does not
    now = time.time()
    gateway.append(CHECKPOINT, checkpoint("gpu-01", now=now + PERIOD))  # a new period: budget back
    exhausted = {
        "host": "gpu-01",
        "model_id": deployment.model_id,
        "period_start": time_text(now - now % PERIOD),
        "period_seconds": PERIOD,
        "meter": "kernel",
        "used_bytes": 1_250_000,
        "budget_bytes": 1_250_000,
    }
    gateway.append(EXHAUSTED, exhausted)
    with pytest.raises(PolicyError, match="egress budget is spent"):
        fetch(deployment, request_id)


def test_the_auditor_names_a_release_logged_without_the_checkpoint_or_verdict(
    guarded: tuple[Deployment, EgressLedger],
) -> None:
    """An insider with the service key logs a release the gate refused (no checkpoint, no verdict)."""
    deployment, gateway = guarded
    digest = enrol_landmarks(deployment.admin)
    verifier = enrol_verifier(deployment.admin, deployment.data, deployment.url)
    policy = ModelPolicy(deployment.model_id, 3, 2, egress=EgressRule(300), location=LocationRule(("US",), 3600))
    deployment.admin(admin.change_policy(policy))
    _, request, request_id = deployment.request()
    approvals = [
        SignedMessage.sign(new_approval(request=request, approver=who), deployment.people[who])
        for who in ("bob", "carol")
    ]
    for signed in approvals:
        deployment.client.approve(request_id, signed)
    with pytest.raises(PolicyError, match="no gateway checkpoint.*no location verdict"):
        fetch(deployment, request_id)
    service_key = deployment.service_key()
    with SealedModel.inspect(deployment.sealed) as model:
        registered = RegisteredModel(policy, model.key, 0)
    decision = Decision(True, (), ("bob", "carol"), ("carol",))
    received = parse_time(request.signed.payload["issued_at"], "issued_at")
    parsed = [Approval.parse(a) for a in approvals]
    with deployment.behind_its_back() as ledger:
        forged = ledger.size
        body = release_body(request, parsed, decision, registered, received, "cd" * 16, forged)
        ledger.append(make_entry("key.released", body, service_key))
    # the same forgery after a fresh checkpoint and a fresh IN verdict would replay: only the conditions differ
    gateway, verifier = (EgressLedger(deployment.url, w.signer) for w in (gateway, verifier))  # restarted
    gateway.append(CHECKPOINT, checkpoint("gpu-01"))
    verifier.append("geo.verdict", verdict("gpu-01", digest))
    audit = deployment.verify_custody()
    assert audit.returncode == 1, audit.stderr
    report = json.loads(audit.stdout)["custody"]
    assert [(p["index"], p["type"]) for p in report["problems"]] == [(forged, "key.released")]
    reason = report["problems"][0]["reason"]
    assert "would not have been allowed" in reason
    assert "egress: host gpu-01 has no gateway checkpoint on the ledger" in reason
    assert "location: host gpu-01 has no location verdict on the ledger" in reason
    with pytest.raises(UnverifiableLedgerError, match="releases are stopped"):
        fetch(deployment, request_id)  # the restarted service found the same problem, and stops
