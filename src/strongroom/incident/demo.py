"""The leak story, end to end on this machine (``strongroom demo-incident``).

A custody deployment on loopback (ledger, witness, custody service, local keyring) holds the sealed
all-MiniLM-L6-v2 with marked releases. Two releases happen; the copy loaded on ``gpu-02`` leaks and the
host's egress gateway logs the climb and an alarm. Then the playbook: one officer declares and the gate
freezes; contain (retire the host, suspend the requester, egress alarm), each acknowledged; the timeline
from the witnessed ledger names the release; attribution names the same release from the leaked copy;
rotation re-seals under a fresh key and retires the old one at a time; the auditor re-decides everything
(earlier releases still verify); two officers and a custodian lift the freeze.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import PolicyError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import OFFICER_READER, new_approval, new_step_ack
from strongroom.custody.state import key_digest
from strongroom.demo import AGREEMENT_TEXT, _officers, bundled_model_dir, write_witnesses
from strongroom.egress.records import appender_files, time_text
from strongroom.incident import timeline
from strongroom.incident.contain import Targets, run_step
from strongroom.incident.evidence import refused_by_replay, witnessed_entries
from strongroom.incident.fingerprint import Candidate, FingerprintKey, FingerprintPolicy, attribute, load_plain_tensors
from strongroom.incident.remote import RemotePort, responder_appender
from strongroom.incident.rotate import reseal, retire_in_ledger_only
from strongroom.keys import LocalKeyring
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import build_entry
from strongroom.ledger.note import NoteVerifier
from strongroom.ledger.witness import Witness
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.server.witness_app import create_witness_app
from strongroom.signing import Signer

Say = Callable[[str], None]
PEOPLE = [("alice", 3, False), ("bob", 3, False), ("dave", 4, False), ("carol", 5, True), ("erin", 4, False)]


def run_incident_demo(workdir: Path, say: Say) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    keyring = LocalKeyring.init(workdir / "keys", passphrase=secrets.token_urlsafe(24))
    sealed_dir = workdir / "sealed-minilm"
    model_id = str(seal_model(bundled_model_dir(), sealed_dir, keyring)["model_id"])
    say(f"sealed all-MiniLM-L6-v2 (model id {model_id[:23]}…) under a local keyring")
    server_dir = workdir / "server"
    officers = _officers(server_dir)
    mark_key = FingerprintKey.generate()
    (server_dir / "fingerprints").mkdir(mode=0o700, exist_ok=True)
    mark_key.save(server_dir / "fingerprints" / "minilm.key", keyring)
    agreement = "sha256:" + hashlib.sha256(AGREEMENT_TEXT).hexdigest()
    services = open_services(server_dir, providers=[keyring], origin="strongroom.demo/log", agreement=agreement)
    vkey = services.ledger.signer.verifier.vkey
    witness = Witness.open(workdir / "witness", "strongroom.demo/witness", [vkey])
    gateway, responder = Signer.generate("ed25519"), Signer.generate("ed25519")
    appender_files(server_dir, "gateway-02", gateway.verifier)
    responder_appender(server_dir, "incident", responder.verifier)
    story: dict[str, Any] = {"model_id": model_id}
    with (
        BackgroundServer(create_witness_app(witness)) as witness_url,
        BackgroundServer(create_app(write_witnesses(server_dir, witness_url, services), server_dir)) as url,
    ):
        client, ledger = CustodyClient(url), LedgerClient(url)
        olga, oscar = officers["olga"], officers["oscar"]

        def two(proposal: admin.Proposal) -> dict[str, Any]:
            return client.admin(admin.propose(proposal, [olga, oscar]))

        with SealedModel.inspect(sealed_dir) as model:
            old_key = model.key
        two(admin.register_model(ModelPolicy(model_id, 3, 2), old_key, {"site": "demo"}))
        policy = FingerprintPolicy(model_id)
        two(admin.set_fingerprint(model_id, policy.to_json(), mark_key.commitment))
        say(f"officers olga and oscar registered the model and chose marked releases ({policy.elements} positions)")
        people = _enrol(two, agreement)
        hosts = {h: _host(two, h) for h in ("gpu-01", "gpu-02")}
        say("enrolled alice, bob, dave, carol (custodian), erin (executive) and hosts gpu-01, gpu-02")

        releases: dict[str, str] = {}
        copies: dict[str, Any] = {}
        for who, host_id in (("alice", "gpu-01"), ("bob", "gpu-02")):
            host = HostSession(host_id, hosts[host_id])
            request_id = _request(client, host, model_id, who, people)
            verified, summary = load_released(client, host, request_id, sealed_dir)
            releases[who], copies[who] = request_id, verified.tensors
            say(f"release {request_id[:16]} to {host_id} for {who}: loaded, verified, marked "
                f"(commitment {summary['fingerprint']['commitment'][:19]}… on the ledger)")  # fmt: skip
        leaked_dir = workdir / "leaked-copy"
        leaked_dir.mkdir()
        _save(copies["bob"], leaked_dir / "model.safetensors")
        now = time.time()
        _egress(ledger, gateway, now, model_id)
        say("gateway on gpu-02 logged egress at 96% of budget and an anomaly alarm; a copy appears outside")

        proposal = admin.declare_incident(f"model:{model_id}", "confirmed", summary="weights on a paste site")
        started = time.perf_counter()
        declared = client.admin(admin.propose(proposal, [olga]))
        incident = str(proposal.change["incident"])
        try:
            _request(client, HostSession("gpu-01", hosts["gpu-01"]), model_id, "alice", people)
            frozen = "NOT refused"
        except PolicyError as exc:
            frozen = str(exc)
        freeze_ms = (time.perf_counter() - started) * 1000
        say(f"olga alone declared incident {incident} (entry {declared['ledger']['index']}); the next request was "
            f"refused: {frozen[:70]}… ({freeze_ms:.0f} ms from declaration to refusal)")  # fmt: skip
        client.acknowledge(new_step_ack(incident, "brief-executive", "executive", "erin", people["erin"]))
        say("erin (executive) acknowledged and took command")

        targets = Targets(hosts=("gpu-02",), people=("bob",))
        contained = []
        for step, role, signer, actor in (
            ("retire-hosts", "security-officer", olga, OFFICER_READER),
            ("suspend-people", "security-officer", olga, OFFICER_READER),
            ("egress-alarm", "operator", people["dave"], "dave"),
        ):
            port = RemotePort(url, officers=[olga], ack_signer=signer, ack_actor=actor, ack_role=role,
                              responder=responder)  # fmt: skip
            result = run_step(port, incident, step, targets)
            again = run_step(port, incident, step, targets)
            port.close()
            contained.append(result.to_json())
            done = ", ".join(result.done)
            say(f"contain {step}: {done}; acknowledged by {actor}; run again: already done={again.already}")

        state_path = workdir / "investigator-state.json"
        witness_keys = [NoteVerifier.from_vkey(witness.signer.verifier.vkey)]
        entries, checked = witnessed_entries(ledger, state_path, log_vkey=vkey, witnesses=witness_keys)
        found = timeline.build(entries, refused=refused_by_replay(entries), checked=checked)
        (workdir / "timeline.html").write_text(timeline.render_html(found))
        culprit = found.culprit.release if found.culprit else None
        reasons = "; ".join(found.culprit.reasons) if found.culprit else "-"
        say(f"timeline from {checked['size']} witnessed entries: named release {str(culprit)[:16]} ({reasons}); "
            f"page: {workdir / 'timeline.html'}")  # fmt: skip
        client.acknowledge(new_step_ack(incident, "timeline", "security-officer", OFFICER_READER, olga))

        with SealedModel.open(sealed_dir, keyring) as model:
            original = model.load_tensors("numpy")
        candidates = [
            Candidate(str(e.body["request_id"]), str(e.body["fingerprint"]))
            for _, e in ledger.query(type="key.released", model_id=model_id)
        ]
        attributed = attribute(load_plain_tensors(leaked_dir), original, candidates, key=mark_key, policy=policy)
        best = attributed.matches[0].z if attributed.matches else 0.0
        other = max((c.z for c in attributed.scores if c.release_id != attributed.release_id), default=0.0)
        say(f"attribution of the leaked copy: {attributed.verdict}, release {str(attributed.release_id)[:16]} "
            f"(z = {best:.1f}; the other release scored {other:.1f})")  # fmt: skip
        client.acknowledge(new_step_ack(incident, "attribute", "security-officer", OFFICER_READER, olga))

        resealed = reseal(sealed_dir, workdir / "sealed-minilm-rotated", keyring, keyring)
        rekeyed = two(admin.rekey_model(model_id, resealed.key, key_digest(old_key), "weights leaked"))
        retired = retire_in_ledger_only(old_key)
        client.acknowledge(new_step_ack(incident, "rotate", "custodian", "carol", people["carol"]))
        say(f"re-sealed {resealed.plaintext_bytes:,} bytes under a fresh data key; olga and oscar registered it "
            f"(entry {rekeyed['ledger']['index']}), the old key retired at that time ({retired.action})")  # fmt: skip

        lift = admin.lift_incident(incident, "contained, rotated, attributed")
        lifted = client.admin(admin.propose(lift, [olga, oscar, people["carol"]]))
        say(f"olga, oscar and custodian carol lifted the freeze (entry {lifted['ledger']['index']})")
        host = HostSession("gpu-01", hosts["gpu-01"])
        after = _request(client, host, model_id, "alice", people)
        _, summary = load_released(client, host, after, workdir / "sealed-minilm-rotated")
        say(f"after the lift, alice's release {after[:16]} opened the re-sealed model under the new key "
            f"(entry {summary['released_entry']['index']})")  # fmt: skip
        entries, checked = witnessed_entries(ledger, state_path, log_vkey=vkey, witnesses=witness_keys)
        audit = audit_custody(entries)
        say(f"auditor: {audit.entries} entries replayed, {len(audit.releases)} releases re-decided (both before the "
            f"rotation still verify), refused: {len(audit.problems)}")  # fmt: skip
        steps = services.custody.state.incidents[incident].steps
        say("who did what: " + "; ".join(f"{s['step']} by {s['actor']} at {s['time']}" for s in steps))
        story.update(
            {
                "incident": incident,
                "releases": releases,
                "leaked_release": releases["bob"],
                "freeze_refusal": frozen,
                "freeze_ms": round(freeze_ms, 1),
                "contained": contained,
                "timeline_culprit": culprit,
                "attributed": attributed.release_id,
                "rotated_seal": resealed.seal_id,
                "retired": retired.to_json(),
                "audit": audit.to_json(),
                "steps": steps,
                "timeline_html": str(workdir / "timeline.html"),
            }
        )
        client.close()
        ledger.close()
    services.close()
    keyring.close()
    mark_key.wipe()
    return story


def _enrol(two: Callable[[admin.Proposal], dict[str, Any]], agreement: str) -> dict[str, Signer]:
    keys = {}
    for person, tier, custodian in PEOPLE:
        key = Signer.generate("ed25519")
        two(admin.enrol_person(person, name=person.title(), public_key=key.verifier.pem().decode(),
                               position=f"SenL-{tier}", tier=tier, custodian=custodian,
                               vetted_on=date.today() - timedelta(days=60)))  # fmt: skip
        two(admin.record_agreement(person, agreement, key))
        keys[person] = key
    return keys


def _host(two: Callable[[admin.Proposal], dict[str, Any]], host_id: str) -> Signer:
    key = Signer.generate("ed25519")
    two(admin.enrol_host(host_id, name=f"{host_id}.dc1", site="demo", owner="platform",
                         public_key=key.verifier.pem().decode()))  # fmt: skip
    return key


def _request(client: CustodyClient, host: HostSession, model_id: str, who: str, people: dict[str, Signer]) -> str:
    from strongroom.custody.protocol import ReleaseRequest

    signed = SignedMessage.sign(host.request_payload(model_id, "evaluation", who), people[who])
    request_id = client.submit_request(signed)
    request = ReleaseRequest.parse(signed)
    for approver in ("dave", "carol"):
        client.approve(request_id, SignedMessage.sign(new_approval(request=request, approver=approver,
                                                                   decision="approve"), people[approver]))  # fmt: skip
    return request_id


def _save(tensors: dict[str, Any], path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, str(path))


def _egress(ledger: LedgerClient, gateway: Signer, now: float, model_id: str) -> None:
    budget = 50 * 2**20
    checkpoint = {
        "host": "gpu-02", "period_start": time_text(now - 3600), "period_seconds": 86400, "interval_seconds": 60,
        "bytes_used": int(budget * 0.96), "budget_bytes": budget, "quota_bytes": budget, "rules_installed": True,
        "rules_digest": "sha256:" + "ab" * 32, "meters": {},
    }  # fmt: skip
    alarm = {"host": "gpu-02", "model_id": model_id, "alarm_id": secrets.token_hex(16), "kind": "anomaly",
             "detail": {"cusum": 9.1}}  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ledger.append(build_entry("egress.checkpoint", checkpoint, gateway, stamp).raw)
    ledger.append(build_entry("egress.alarm", alarm, gateway, stamp).raw)
