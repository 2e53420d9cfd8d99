"""Insider attacks against a real ``strongroom serve`` process: one test per attack class, each as the
insider would try it with one key, one file or one officer's cooperation. None may end with a key released
outside the quorum, or with a forged release passing the audit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from strongroom.custody import admin
from strongroom.custody.approver import Approver
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import CoSigned, SignedMessage
from strongroom.custody.errors import (
    AlreadyExistsError,
    CustodyError,
    MessageError,
    NotAuthorisedError,
    NotFoundError,
    PolicyError,
    UnverifiableLedgerError,
)
from strongroom.custody.host import HostSession
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import (
    OFFICER_READER,
    AdminSubmission,
    ReleaseRequest,
    new_approval,
    new_read_query,
)
from strongroom.custody.state import key_reference
from strongroom.keys.provider import KeyBinding, WrappedKey
from strongroom.ledger.entries import make_entry
from strongroom.ledger.log import Ledger
from strongroom.seal import SealedModel
from strongroom.server.background import serve_process
from strongroom.signing import _ORDERS, Signer
from tests.custody.conftest import PASSPHRASE, PEOPLE, SERVER_ENV, Admin, make_officers

SRC = str(Path(__file__).parents[2] / "src")
AGREEMENT_TEXT = b"agreement"
SERVER_KEY_PASSPHRASE = SERVER_ENV["STRONGROOM_SERVER_PASSPHRASE"].encode()
DIGEST = "sha256:" + hashlib.sha256(AGREEMENT_TEXT).hexdigest()


@dataclass
class Deployment:
    """One data directory served by a real ``strongroom serve`` process, restartable."""

    data: Path
    keys: Path
    sealed: Path
    model_id: str
    officers: dict[str, Signer]
    appender: Signer
    url: str = ""
    people: dict[str, Signer] = field(default_factory=dict)
    hosts: dict[str, Signer] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def client(self) -> CustodyClient:
        return CustodyClient(self.url)

    @property
    def admin(self) -> Admin:
        return Admin(self.client, self.officers)

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": PASSPHRASE, **SERVER_ENV}
        agreement = self.data.parent / "agreement.txt"
        agreement.write_bytes(AGREEMENT_TEXT)
        self.url = self._stack.enter_context(
            serve_process(self.data, "--keys", str(self.keys), "--agreement", str(agreement), env=env)
        )

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()

    def service_key(self) -> Signer:
        """The custody service's key file, read by an insider who has the file and its passphrase."""
        return Signer.load(self.data / "service.key", SERVER_KEY_PASSPHRASE)

    @contextlib.contextmanager
    def behind_its_back(self) -> Iterator[Ledger]:
        """The ledger opened directly while the server is down: an insider with the database and keys."""
        self.stop()
        ledger = Ledger.open(self.data, key_passphrase=SERVER_KEY_PASSPHRASE)
        try:
            yield ledger
        finally:
            ledger.close()
            self.start()

    def request(self, who: str = "alice", host: HostSession | None = None) -> tuple[HostSession, ReleaseRequest, str]:
        host = host or HostSession("gpu-01", self.hosts["gpu-01"])
        signed = SignedMessage.sign(host.request_payload(self.model_id, "evaluation", who), self.people[who])
        return host, ReleaseRequest.parse(signed), self.client.submit_request(signed)

    def approve(self, request: ReleaseRequest, who: str, decision: str = "approve", key: Signer | None = None) -> int:
        signed = SignedMessage.sign(
            new_approval(request=request, approver=who, decision=decision), key or self.people[who]
        )
        return self.client.approve(request.request_id, signed)

    def released(self) -> tuple[HostSession, str, dict[str, object]]:
        host, request, request_id = self.request()
        self.approve(request, "bob")
        self.approve(request, "carol")
        return host, request_id, self.client.release(request_id, host.fetch(request_id))

    def verify_custody(self) -> subprocess.CompletedProcess[str]:
        """``strongroom ledger verify --custody --json``, as an outside auditor runs it."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "ledger",
                "verify",
                self.url,
                "--state",
                str(self.data.parent / "auditor.json"),
                "--custody",
                "--no-witness",
                "--json",
            ],
            env={**os.environ, "PYTHONPATH": SRC},
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def deployment(tmp_path: Path, sealed_minilm: tuple[Path, Path, str]) -> Iterator[Deployment]:
    keys, sealed, model_id = sealed_minilm
    data = tmp_path / "srv"
    officers = make_officers(data)
    appender = Signer.generate("ed25519")
    (data / "appenders").mkdir()
    (data / "appenders" / "evals.pub").write_bytes(appender.verifier.pem())
    found = Deployment(data, keys, sealed, model_id, officers, appender)
    found.start()
    digest = DIGEST
    with SealedModel.inspect(sealed) as model:
        found.admin(admin.register_model(ModelPolicy(model_id, 3, 2), model.key))
    found.people = found.admin.enrol(PEOPLE, agreement=digest)
    found.hosts["gpu-01"] = found.admin.enrol_host("gpu-01")
    yield found
    found.stop()


def entries_of(deployment: Deployment, entry_type: str) -> int:
    return len(httpx.get(f"{deployment.url}/v1/entries", params={"type": entry_type}).json()["entries"])


# -- any ledger appender rewrites the people registry ---------------------------------------------------


def test_an_appender_cannot_write_custody_or_people_entries(deployment: Deployment) -> None:
    mallory = Signer.generate("ed25519")
    enrol = {"person": "mallory", "change": "enrol", "authorisation": {}}
    for entry_type, body in [
        ("person.changed", enrol),
        ("key.released", {"model_id": deployment.model_id, "request_id": "00" * 32, "approvers": [], "host": {}}),
    ]:
        raw = make_entry(entry_type, body, deployment.appender)
        reply = httpx.post(deployment.url + "/add", content=raw)
        assert reply.status_code == 403 and f"may not write {entry_type}" in reply.text
    evaluation = {"model_id": deployment.model_id, "suite": "mmlu", "results": {"acc": 0.5}, "evaluator": "evals"}
    assert (
        httpx.post(
            deployment.url + "/add", content=make_entry("model.evaluated", evaluation, deployment.appender)
        ).status_code
        == 201
    )
    service_key = deployment.service_key()
    reply = httpx.post(deployment.url + "/add", content=make_entry("person.changed", enrol, service_key))
    assert reply.status_code == 403 and "not authorised" in reply.text
    deployment.people["mallory"] = mallory
    with pytest.raises(MessageError, match="no person 'mallory'"):
        deployment.request("mallory")
    # Granting an appender a custody type in its allow-list is a configuration error the server refuses.
    deployment.stop()
    (deployment.data / "appenders" / "evals.types").write_text("model.evaluated person.changed\n")
    with pytest.raises(Exception, match="exited"):
        deployment.start()
    (deployment.data / "appenders" / "evals.types").unlink()
    deployment.start()


def test_entries_written_behind_the_services_back_never_count(deployment: Deployment) -> None:
    """With the database, the service key or an appender key, an insider appends people entries directly;
    after a restart none of them counts, each is named, releases stop, and the log keeps serving."""
    mallory = Signer.generate("ed25519")
    enrolment = admin.enrol_person(
        "mallory",
        name="M",
        public_key=mallory.verifier.pem().decode(),
        position="x",
        tier=5,
        custodian=True,
        vetted_on=date.today(),
    )
    one_officer = admin.propose(enrolment, [deployment.officers["olga"]])
    service_key = deployment.service_key()
    with deployment.behind_its_back() as ledger:
        start = ledger.size
        for signer, auth in [
            (deployment.appender, one_officer.cosigned.to_json()),
            (service_key, one_officer.cosigned.to_json()),
            (service_key, {"payload": "x"}),
        ]:
            ledger.append(
                make_entry("person.changed", {"person": "mallory", "change": "enrol", "authorisation": auth}, signer)
            )
    deployment.people["mallory"] = mallory
    with pytest.raises(MessageError, match="no person 'mallory'"):
        deployment.request("mallory")
    host, request, request_id = deployment.request("alice")
    deployment.approve(request, "bob")
    deployment.approve(request, "carol")
    with pytest.raises(UnverifiableLedgerError, match=f"503.*entries at {start}, {start + 1}, {start + 2}"):
        deployment.client.release(request_id, host.fetch(request_id))
    assert httpx.get(deployment.url + "/checkpoint").status_code == 200
    audit = deployment.verify_custody()
    assert audit.returncode == 1, audit.stderr
    problems = json.loads(audit.stdout)["custody"]["problems"]
    assert [p["index"] for p in problems] == [start, start + 1, start + 2]


# -- one officer, or whoever reads the service's key file, releases any model ---------------------------


def test_one_officer_or_the_service_key_cannot_administer(deployment: Deployment) -> None:
    service_key = deployment.service_key()
    lax = admin.enrol_person(
        "puppet",
        name="P",
        public_key=Signer.generate("ed25519").verifier.pem().decode(),
        position="x",
        tier=5,
        custodian=True,
        vetted_on=date.today(),
    )
    with pytest.raises(NotAuthorisedError, match="403.*needs 2 distinct officers, signed by 1"):
        deployment.client.admin(admin.propose(lax, [deployment.officers["olga"]]))
    with pytest.raises(NotAuthorisedError, match="403.*not an officer"):
        deployment.client.admin(admin.propose(lax, [service_key, deployment.officers["olga"]]))
    with pytest.raises(NotAuthorisedError, match="403.*not an officer"):
        deployment.client.admin(admin.propose(lax, [service_key]))
    with pytest.raises(NotFoundError):
        deployment.client.read(new_read_query(OFFICER_READER, "person:puppet", deployment.officers["olga"]))


def test_a_wrapped_key_unwraps_only_for_the_model_it_was_sealed_for(deployment: Deployment) -> None:
    """The real model's wrapped key, registered again under a made-up id with a lax policy, by two officers."""
    with SealedModel.inspect(deployment.sealed) as model:
        real = model.key
    fake = "blake3:" + "66" * 32
    lax = ModelPolicy(fake, 1, 1)
    with pytest.raises(MessageError, match="bound to model"):
        deployment.admin(admin.register_model(lax, real))
    edited = WrappedKey(real.provider, real.key_id, real.blob, KeyBinding(real.binding.seal_id, fake))
    with pytest.raises(AlreadyExistsError, match="409.*already registered"):
        deployment.admin(admin.register_model(lax, edited))
    new_seal = WrappedKey(real.provider, real.key_id, real.blob, KeyBinding("ab" * 16, fake))
    with pytest.raises(AlreadyExistsError, match="already registered"):
        deployment.admin(admin.register_model(lax, new_seal))
    assert entries_of(deployment, "model.registered") == 1


def test_an_edited_binding_is_refused_before_registration(deployment: Deployment, tmp_path: Path) -> None:
    """A model sealed but not yet registered: an insider edits its key's binding to a made-up id first."""
    from strongroom.keys import LocalKeyring
    from strongroom.seal import seal_path

    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(4096))
    ring = LocalKeyring.open(deployment.keys, passphrase=PASSPHRASE)
    seal_path(src, tmp_path / "w.sealed", ring, model_id="blake3:" + "77" * 32)
    ring.close()
    with SealedModel.inspect(tmp_path / "w.sealed") as model:
        key = model.key
    fake = "blake3:" + "88" * 32
    edited = WrappedKey(key.provider, key.key_id, key.blob, KeyBinding(key.binding.seal_id, fake))
    with pytest.raises(MessageError, match="does not open under its binding"):
        deployment.admin(admin.register_model(ModelPolicy(fake, 1, 1), edited))


# -- the host is whoever the requester says it is -------------------------------------------------------


def test_the_key_goes_only_to_the_enrolled_host(deployment: Deployment) -> None:
    laptop = Signer.generate("ed25519")
    with pytest.raises(MessageError, match="names host key"):
        deployment.request(host=HostSession("gpu-01", laptop))
    with pytest.raises(MessageError, match="no host 'my-laptop' is enrolled"):
        deployment.request(host=HostSession("my-laptop", laptop))
    # The requester keeps the host's key id but puts their own laptop's ephemeral key in the request.
    honest = HostSession("gpu-01", deployment.hosts["gpu-01"])
    payload = honest.request_payload(deployment.model_id, "evaluation", "alice")
    thief = HostSession("gpu-01", laptop)
    payload["host"]["ephemeral"] = base64.b64encode(thief.ephemeral_public).decode()
    with pytest.raises(MessageError, match="not the enrolled host"):
        deployment.client.submit_request(SignedMessage.sign(payload, deployment.people["alice"]))
    assert Approver(deployment.client, "bob", deployment.people["bob"]).pending() == []


# -- clearance rules the docs state ---------------------------------------------------------------------


def test_clearance_as_documented(deployment: Deployment) -> None:
    low = deployment.admin.enrol([("lou", 1)], agreement=DIGEST)
    unsigned = deployment.admin.enrol([("nora", 4)], agreement=None)
    deployment.people.update(low)
    deployment.people.update(unsigned)
    host, request, request_id = deployment.request()
    with pytest.raises(PolicyError, match="approver lou is SenL-1; the model needs SenL-3"):
        deployment.approve(request, "lou")
    with pytest.raises(PolicyError, match="has not signed the current access agreement"):
        deployment.approve(request, "nora")
    with pytest.raises(PolicyError, match="has not signed the current access agreement"):
        deployment.request("nora")
    deployment.approve(request, "carol")
    with pytest.raises(PolicyError, match="1 of 2 required approvals"):
        deployment.client.release(request_id, host.fetch(request_id))


# -- the custody audit accepts forgeries -----------------------------------------------------------------


def test_the_audit_re_decides_and_names_every_forged_release(deployment: Deployment) -> None:
    _, _, bundle = deployment.released()
    genuine = int(bundle["ledger"]["index"])  # type: ignore[index]
    service_key = deployment.service_key()
    _, denied, _ = deployment.request()
    denial = SignedMessage.sign(
        new_approval(request=denied, approver="dave", decision="deny"), deployment.people["dave"]
    )
    with SealedModel.inspect(deployment.sealed) as model:
        reference = key_reference(model.key)

    def release_body(
        request: ReleaseRequest, approvals: list[SignedMessage], approvers: list[str]
    ) -> dict[str, object]:
        return {
            "model_id": request.model_id,
            "request_id": request.request_id,
            "request": request.signed.to_json(),
            "approvals": [a.to_json() for a in approvals],
            "approvers": approvers,
            "custodians": [],
            "host": {"host_id": request.host_id, "key_id": request.host_key_id},
            "key": reference,
            "received_at": request.signed.payload["issued_at"],
            "release_nonce": "ab" * 16,
        }

    lapsed = Signer.generate("ed25519")  # enrolled by both officers, but vetted 25 years ago
    deployment.admin(
        admin.enrol_person(
            "old-timer", name="O", public_key=lapsed.verifier.pem().decode(), position="x", tier=5,
            custodian=True, vetted_on=date(2001, 1, 1),
        )
    )  # fmt: skip
    deployment.admin(admin.record_agreement("old-timer", DIGEST, lapsed))
    stale = SignedMessage.sign(new_approval(request=denied, approver="old-timer"), lapsed)
    bob = SignedMessage.sign(new_approval(request=denied, approver="bob"), deployment.people["bob"])
    with deployment.behind_its_back() as ledger:
        start = ledger.size
        body = release_body(denied, [denial], ["dave"])
        ledger.append(make_entry("key.released", body, Signer.generate("ed25519")))  # a random key
        ledger.append(make_entry("key.released", body, service_key))  # the service key, a denial as the quorum
        sock = Signer.generate("ed25519")  # approvals by someone no officer enrolled
        puppet = SignedMessage.sign(new_approval(request=denied, approver="puppet"), sock)
        ledger.append(
            make_entry("key.released", release_body(denied, [denial, puppet], ["puppet", "dave"]), service_key)
        )
        lapsed_body = release_body(denied, [bob, stale], ["bob", "old-timer"])
        ledger.append(make_entry("key.released", {**lapsed_body, "custodians": ["old-timer"]}, service_key))
    audit = deployment.verify_custody()
    assert audit.returncode == 1, audit.stderr
    report = json.loads(audit.stdout)["custody"]
    verdicts = {r["index"]: r["verified"] for r in report["releases"]}
    assert verdicts == {genuine: True, start: False, start + 1: False, start + 2: False, start + 3: False}
    reasons = {p["index"]: p["reason"] for p in report["problems"]}
    assert "not by the custody service" in reasons[start]
    assert "would not have been allowed" in reasons[start + 1] and "denied by dave" in reasons[start + 1]
    assert "no person 'puppet'" in reasons[start + 2]
    assert "approver old-timer has no access: overdue" in reasons[start + 3]


# -- replays and malleability -----------------------------------------------------------------------------


def test_load_reports_replayed_and_entries_malleated(deployment: Deployment) -> None:
    host, request_id, bundle = deployment.released()
    report = host.loaded(bundle)
    deployment.client.loaded(request_id, report)
    for _ in range(3):
        with pytest.raises(AlreadyExistsError):
            deployment.client.loaded(request_id, report)
    assert entries_of(deployment, "model.loaded") == 1
    # An ECDSA appender's entry with s -> n - s is the same statement: the log refuses the copy.
    (deployment.data / "appenders" / "p256.pub").write_bytes((ecdsa := Signer.generate("ecdsa-p256")).verifier.pem())
    evaluation = {"model_id": deployment.model_id, "suite": "s", "results": {}, "evaluator": "e"}
    raw = make_entry("model.evaluated", evaluation, ecdsa)
    assert httpx.post(deployment.url + "/add", content=raw).status_code == 201
    entry = json.loads(raw)
    r, s = decode_dss_signature(base64.b64decode(entry["signature"]))
    entry["signature"] = base64.b64encode(encode_dss_signature(r, _ORDERS["secp256r1"] - s)).decode()
    from strongroom.canonical_json import canonical_json

    reply = httpx.post(deployment.url + "/add", content=canonical_json(entry))
    assert reply.status_code == 400 and "low-S" in reply.text
    assert entries_of(deployment, "model.evaluated") == 1


def test_a_captured_fetch_cannot_lock_the_host_out(deployment: Deployment) -> None:
    host, request, request_id = deployment.request()
    captured = host.fetch(request_id)
    with pytest.raises(PolicyError):
        deployment.client.release(request_id, captured)  # replayed before the quorum: refused, nonce unspent
    deployment.approve(request, "bob")
    deployment.approve(request, "carol")
    deployment.client.release(request_id, captured)  # a third party replays it after: it cannot open the key
    host.open_release(deployment.client.release(request_id, host.fetch(request_id))).close()


def test_the_registry_survives_restarts(deployment: Deployment) -> None:
    deployment.admin(admin.offboard("erin", "left"), "otto")
    deployment.stop()
    deployment.start()
    with pytest.raises(NotAuthorisedError, match="erin is offboarded"):  # an offboarded person reads nothing
        deployment.client.read(new_read_query("erin", "person:erin", deployment.people["erin"]))
    standing = deployment.client.read(new_read_query(OFFICER_READER, "person:erin", deployment.officers["otto"]))
    assert standing["effective_tier"] == 0 and "offboarded" in standing["reasons"]
    with pytest.raises(CustodyError, match="offboarded"):
        deployment.request("erin")


def test_a_co_signed_change_cannot_be_replayed_or_edited(deployment: Deployment) -> None:
    submitted = admin.propose(admin.offboard("erin"), [deployment.officers["otto"]])
    deployment.client.admin(submitted)
    with pytest.raises(MessageError, match="replayed"):
        deployment.client.admin(submitted)
    signed = submitted.cosigned
    edited = CoSigned({**signed.payload, "change": {**signed.payload["change"], "person": "bob"}}, signed.signatures)
    with pytest.raises(MessageError, match="does not verify"):
        deployment.client.admin(AdminSubmission(edited, submitted.openings))


# -- personnel data is public ---------------------------------------------------------------------------


def test_personnel_details_stay_off_the_public_log_and_reads_are_signed(deployment: Deployment) -> None:
    from strongroom.ledger.client import LedgerClient
    from strongroom.people import SignalKind

    deployment.admin(admin.raise_signal("erin", SignalKind.FINANCIAL, detail="large unexplained debt"), "otto")
    _, _, request_id = deployment.request()
    ledger = LedgerClient(deployment.url)
    size = int(httpx.get(deployment.url + "/checkpoint").text.split("\n")[1])
    public = b"".join(ledger.entries(size))
    for secret in (b"debt", b"financial", b"Erin", b"SenL-4"):  # a signal's detail and kind, names, positions
        assert secret not in public, secret
    for path in ("/v1/people/erin", "/v1/hosts/gpu-01", f"/v1/custody/requests/{request_id}"):
        assert httpx.get(deployment.url + path).status_code in (404, 405)
    officer = deployment.officers["otto"]
    standing = deployment.client.read(new_read_query(OFFICER_READER, "person:erin", officer))
    assert standing["effective_tier"] == 0 and any(r.startswith("suspended: open signal") for r in standing["reasons"])
    details = deployment.client.read(new_read_query(OFFICER_READER, "details:erin", officer))["details"]
    assert {(d["field"], d["value"]) for d in details} >= {("detail", "large unexplained debt"), ("kind", "financial")}
    for reader, subject in [("bob", "person:erin"), ("bob", "details:bob"), ("erin", "request:" + request_id)]:
        with pytest.raises(NotAuthorisedError, match="may not read|offboarded|suspended"):
            deployment.client.read(new_read_query(reader, subject, deployment.people[reader]))
    assert deployment.client.read(new_read_query("bob", "request:" + request_id, deployment.people["bob"]))["state"]
    stranger = Signer.generate("ed25519")
    with pytest.raises(MessageError, match="signed by key"):
        deployment.client.read(new_read_query("bob", "person:bob", stranger))
