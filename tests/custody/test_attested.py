"""Attested hosts at custody level (issue 12), on real swtpm TPMs and a served custody deployment.

One test per issue case. Where a case is also covered at the attest level (pure verifier on real TPMs),
the name is given: tests/attest/test_refusals.py covers every verifier refusal in isolation; these tests
show the custody gate, the ledger and the auditor make the same decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.enrol import EnrolmentEvidence
from strongroom.attest.host import HostTpm
from strongroom.attest.loader import loader_digest
from strongroom.attest.pcrs import replay as pcr_replay
from strongroom.attest.quote import release_qualifying_data
from strongroom.attest.swtpm import SoftwareTpm
from strongroom.custody import admin
from strongroom.custody.attestation import LAYOUT, FetchEvidence
from strongroom.custody.audit import audit_custody
from strongroom.custody.authority import SERVICE_TYPES
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError, MessageError, NotAuthorisedError, PolicyError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import fetch_window, new_fetch
from strongroom.custody.state import replay
from strongroom.keys import LocalKeyring
from strongroom.ledger.entries import build_entry
from strongroom.signing import Signer

from .conftest import PASSPHRASE, CustodyEnv, deploy

pytestmark = pytest.mark.timeout(300)

HOST_CLASS = "inference"
BAD_LOADER = bytes.fromhex("ba" * 32)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestManufacturerCa:
    return TestManufacturerCa.create(tmp_path_factory.mktemp("manufacturer"))


@pytest.fixture(scope="module")
def tpm_a(ca: TestManufacturerCa) -> Iterator[HostTpm]:
    with SoftwareTpm(ca) as swtpm, HostTpm(swtpm.tcti) as tpm:
        yield tpm


@pytest.fixture(scope="module")
def tpm_b(ca: TestManufacturerCa) -> Iterator[HostTpm]:
    with SoftwareTpm(ca) as swtpm, HostTpm(swtpm.tcti) as tpm:
        yield tpm


@pytest.fixture(scope="module")
def golden_loader() -> bytes:
    return loader_digest()


@dataclass
class Attested:
    env: CustodyEnv
    tpm: HostTpm
    key: Signer
    host_id: str = "gpu-node-01"

    def session(self) -> HostSession:
        return HostSession(self.host_id, self.key, tpm=self.tpm)

    def approved(self, session: HostSession) -> str:
        _, request, request_id = self.env.request(host=session)
        self.env.approve(request, "bob")
        self.env.approve(request, "carol")
        return request_id

    def entries(self, entry_type: str) -> list[dict[str, object]]:
        return [e.body for _, e in self.env.services.ledger.query(type=entry_type)]


def measure(tpm: HostTpm, loader: bytes) -> None:
    """Boot-time measurement: the loader PCR from zero, extended once; the model PCR at zero."""
    tpm.reset(LAYOUT.loader)
    tpm.reset(LAYOUT.model)
    tpm.extend(LAYOUT.loader, loader)


def enrol(env: CustodyEnv, tpm: HostTpm, ca: TestManufacturerCa, host_id: str = "gpu-node-01") -> Signer:
    """Officers' tool: verify the host's evidence, run credential activation against its TPM, co-sign."""
    key = Signer.generate("ed25519")
    pem = key.verifier.pem()
    evidence = EnrolmentEvidence(tpm.ek_certificate(), tpm.ek_public(), tpm.create_ak(pem))
    env.admin(
        admin.enrol_attested_host(
            host_id, name=f"{host_id}.dc1", site="dc1 rack 7", owner="inference", public_key=pem.decode(),
            host_class=HOST_CLASS, evidence=evidence, trusted_cas=[ca.cert_pem], activate=tpm.activate_credential,
        )
    )  # fmt: skip
    return key


@pytest.fixture
def attested(
    tmp_path: Path,
    sealed_minilm: tuple[Path, Path, str],
    ca: TestManufacturerCa,
    tpm_a: HostTpm,
    golden_loader: bytes,
) -> Iterator[Attested]:
    """A deployment whose model requires attestation, the manufacturer CA and golden values on the ledger,
    and gpu-node-01 enrolled on TPM A, measured with the golden loader."""
    keydir, sealed, _ = sealed_minilm
    keyring = LocalKeyring.open(keydir, passphrase=PASSPHRASE)
    with deploy(tmp_path / "server", [keyring], sealed, keyring=keyring) as env:
        env.admin(admin.trust_manufacturer_ca(ca.cert_pem))
        env.admin(admin.golden_values(HOST_CLASS, {LAYOUT.loader: [pcr_replay([golden_loader])]}))
        env.admin(admin.change_policy(ModelPolicy(env.model_id, 3, 2, attestation=True)))
        key = enrol(env, tpm_a, ca)
        measure(tpm_a, golden_loader)
        yield Attested(env, tpm_a, key)
    keyring.close()


def audit(env: CustodyEnv) -> list[str]:
    """The offline auditor over the whole log (``strongroom ledger verify --custody``'s code)."""
    return [p.reason for p in audit_custody(env.services.ledger.scan()).problems]


def test_golden_path_attested_release_and_load(attested: Attested) -> None:
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    _, summary = load_released(env.client, session, request_id, env.sealed)
    assert summary["tensors"] > 0
    (released,) = attested.entries("key.released")
    record = released["attestation"]
    assert isinstance(record, dict)
    assert record["verdict"]["result"] == "trusted"
    assert record["verdict"]["host_class"] == HOST_CLASS
    enrolled = env.services.custody.state.tpm_hosts["gpu-node-01"].enrolled
    assert record["verdict"]["ak_name"] == enrolled.ak_name.hex()
    (loaded,) = attested.entries("model.loaded")
    assert loaded["attestation"]["result"] == "trusted"  # type: ignore[index]
    report = audit_custody(env.services.ledger.scan())
    assert report.ok, report.problems
    assert report.releases[0]["attestation"]["result"] == "trusted"
    assert report.releases[0]["loads"][0]["attestation"]["host_class"] == HOST_CLASS


def test_enrolment_lands_with_evidence_and_replays(attested: Attested) -> None:
    (enrolment,) = [b for b in attested.entries("host.changed") if b["host"] == "gpu-node-01"]
    change = enrolment["authorisation"]["payload"]["change"]  # type: ignore[index]
    assert set(change["tpm"]) == {"host_class", "evidence", "activation"}
    assert len(enrolment["authorisation"]["signatures"]) == 2  # type: ignore[index]
    state = replay(attested.env.services.ledger.scan(SERVICE_TYPES))
    assert "gpu-node-01" in state.tpm_hosts and not state.problems


def test_modified_loader_is_refused(attested: Attested) -> None:
    measure(attested.tpm, BAD_LOADER)
    session = attested.session()
    request_id = attested.approved(session)
    with pytest.raises(PolicyError, match="not a golden value"):
        load_released(attested.env.client, session, request_id, attested.env.sealed)
    assert attested.entries("key.released") == []
    (refused,) = attested.entries("attest.refused")
    assert refused["request_id"] == request_id


def test_fetch_without_quote_is_refused(attested: Attested) -> None:
    session = attested.session()
    request_id = attested.approved(session)
    with pytest.raises(PolicyError, match="carries none"):
        attested.env.client.release(request_id, session.fetch(request_id))  # no head: no quote
    assert attested.entries("key.released") == []


def test_replayed_quote_is_refused(attested: Attested) -> None:
    """A quote captured from an earlier fetch, put into a new fetch (new nonce): its qualifying data binds
    the old nonce. (tests/attest/test_refusals.py checks qualifying data at the verifier.)"""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    first = captured_evidence(session.fetch(request_id, env.client.head()))
    replayed = new_fetch(request_id, session.identity, first, fetch_window())
    with pytest.raises(PolicyError, match="qualifying data"):
        env.client.release(request_id, replayed)
    assert attested.entries("key.released") == []


def test_stale_quote_is_refused(attested: Attested, golden_loader: bytes) -> None:
    """A quote bound to a ledger head older than the class's golden values is stale, even with a fresh nonce."""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    head = env.client.head()
    env.admin(admin.golden_values(HOST_CLASS, {LAYOUT.loader: [pcr_replay([golden_loader])]}))
    with pytest.raises(PolicyError, match="stale"):
        env.client.release(request_id, session.fetch(request_id, head))
    assert attested.entries("key.released") == []


def test_quote_from_another_tpm_is_refused(attested: Attested, tpm_b: HostTpm, golden_loader: bytes) -> None:
    """TPM B, measured with the golden loader, quotes the right qualifying data: not the enrolled AK."""
    env = attested.env
    measure(tpm_b, golden_loader)
    tpm_b.create_ak(attested.key.verifier.pem())  # even an AK made for the same identity key
    session = attested.session()
    request_id = attested.approved(session)
    foreign = HostSession(session.host_id, session.identity, session.ephemeral, tpm=tpm_b)
    with pytest.raises(PolicyError, match="signature"):
        env.client.release(request_id, foreign.fetch(request_id, env.client.head()))
    assert attested.entries("key.released") == []


def test_ak_not_activated_in_the_enrolled_tpm_is_refused(
    attested: Attested, tpm_b: HostTpm, ca: TestManufacturerCa
) -> None:
    """TPM A's EK certificate with TPM B's AK: the challenge is encrypted to A's EK for B's AK name, and no
    TPM can answer it (A has not that AK, B has not that EK). (Also tests/attest/test_refusals.py.)"""
    env = attested.env
    key = Signer.generate("ed25519")
    pem = key.verifier.pem()
    a = attested.tpm
    evidence = EnrolmentEvidence(a.ek_certificate(), a.ek_public(), tpm_b.create_ak(pem))
    for activate in (tpm_b.activate_credential, a.activate_credential):
        with pytest.raises(CustodyError, match="TPM enrolment refused"):
            admin.enrol_attested_host(
                "gpu-node-02", name="n2", site="dc1", owner="x", public_key=pem.decode(), host_class=HOST_CLASS,
                evidence=evidence, trusted_cas=[env_ca_pem(env)], activate=activate,
            )  # fmt: skip
    assert "gpu-node-02" not in env.services.custody.state.tpm_hosts


def test_ek_certificate_from_an_untrusted_ca_is_refused(attested: Attested, tmp_path: Path) -> None:
    """A TPM whose EK certificate an untrusted CA issued: the officers' tool refuses, and so does the service
    for a change built without the tool (the ledger re-verifies the chain)."""
    env = attested.env
    untrusted = TestManufacturerCa.create(tmp_path / "untrusted", "Untrusted Manufacturer")
    with SoftwareTpm(untrusted) as swtpm, HostTpm(swtpm.tcti) as tpm:
        key = Signer.generate("ed25519")
        pem = key.verifier.pem()
        evidence = EnrolmentEvidence(tpm.ek_certificate(), tpm.ek_public(), tpm.create_ak(pem))
        with pytest.raises(CustodyError, match="TPM enrolment refused"):
            admin.enrol_attested_host(
                "gpu-node-03", name="n3", site="dc1", owner="x", public_key=pem.decode(), host_class=HOST_CLASS,
                evidence=evidence, trusted_cas=[env_ca_pem(env)], activate=tpm.activate_credential,
            )  # fmt: skip
        proposal = admin.enrol_host("gpu-node-03", name="n3", site="dc1", owner="x", public_key=pem.decode())
        proposal.change["tpm"] = {
            "host_class": HOST_CLASS,
            "evidence": json.loads(evidence.to_json()),
            "activation": {"ak_name": evidence.ak.name.hex(), "challenge": "00" * 32},
        }
        with pytest.raises(NotAuthorisedError, match="EK certificate"):
            env.admin(proposal)
    assert "gpu-node-03" not in env.services.custody.state.hosts.hosts


def test_host_retired_after_approval_is_refused(attested: Attested) -> None:
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    env.admin(admin.retire_host("gpu-node-01", "decommissioned"), "olga")
    with pytest.raises(PolicyError, match="retired"):
        env.client.release(request_id, session.fetch(request_id, env.client.head()))
    assert attested.entries("key.released") == []


def test_pcr_extended_after_release_makes_the_tpm_bound_key_unusable(attested: Attested) -> None:
    """The key is released (the quote was golden), then the loader PCR moves: HPKE still opens, the TPM
    refuses the unseal; the data key never leaves the TPM's policy."""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    bundle = env.client.release(request_id, session.fetch(request_id, env.client.head()))
    assert bundle["tpm_bound"] is True
    attested.tpm.extend(LAYOUT.loader, BAD_LOADER)  # e.g. a second loader started after the release
    with pytest.raises(CustodyError, match="does not unseal"):
        session.open_release(bundle)


def test_tpm_bound_key_does_not_open_without_the_model_measurement(attested: Attested) -> None:
    """Control for the test above: the same flow with the PCRs untouched opens, once the model is declared."""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    bundle = env.client.release(request_id, session.fetch(request_id, env.client.head()))
    session.open_release(bundle).close()


def test_auditor_catches_a_release_whose_quote_is_off_golden(attested: Attested) -> None:
    """The service key logs a key.released whose quote shows a non-golden loader (same AK, right qualifying
    data): replay, with the gate's own decision code, names the entry."""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    load_released(env.client, session, request_id, env.sealed)
    assert audit(env) == []
    entries = list(env.services.ledger.scan())
    position, (index, released) = next((n, e) for n, e in enumerate(entries) if e[1].type == "key.released")
    body = json.loads(json.dumps(released.body))
    record = body["attestation"]
    measure(attested.tpm, BAD_LOADER)
    qualifying = release_qualifying_data(
        request_id, bytes.fromhex(record["fetch_nonce"]), session.ephemeral_public,
        bytes.fromhex(record["ledger_head"]["leaf_hash"]),
    )  # fmt: skip
    record["quote"] = json.loads(attested.tpm.quote([LAYOUT.loader, LAYOUT.model], qualifying).to_json())
    forged = build_entry("key.released", body, env.services.custody.service_key, released.time)
    entries[position] = (index, forged)
    report = audit_custody(entries[: position + 1])
    assert [p.index for p in report.problems] == [index]
    assert "not a golden value" in report.problems[0].reason
    assert report.releases[0]["verified"] is False


def captured_evidence(signed: SignedMessage) -> FetchEvidence:
    raw = signed.payload["attestation"]
    return FetchEvidence.parse(raw, "captured fetch")


def env_ca_pem(env: CustodyEnv) -> bytes:
    (pem,) = env.services.custody.state.attest_policy.manufacturer_cas
    return pem


def test_load_report_must_carry_a_quote_showing_the_model(attested: Attested) -> None:
    """model.loaded for an attested release: without a quote, or with a quote taken before the model was
    measured (model PCR still at the release's value), it is refused; the right one lands with its verdict."""
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    bundle = env.client.release(request_id, session.fetch(request_id, env.client.head()))
    early = session.loaded(bundle)  # the model PCR has not been extended yet: not this model's load
    bare = HostSession(session.host_id, session.identity, session.ephemeral).loaded(bundle)
    with pytest.raises(NotAuthorisedError, match="must carry a TPM quote"):
        env.client.loaded(request_id, bare)
    with pytest.raises(NotAuthorisedError, match="model PCR"):
        env.client.loaded(request_id, early)
    session.open_release(bundle).close()  # declares the model in the TPM, then unseals
    env.client.loaded(request_id, session.loaded(bundle))
    (loaded,) = attested.entries("model.loaded")
    assert loaded["attestation"]["result"] == "trusted"  # type: ignore[index]


def test_malformed_attestation_is_a_400_not_a_500(attested: Attested) -> None:
    env = attested.env
    session = attested.session()
    request_id = attested.approved(session)
    payload = dict(session.fetch(request_id).payload)
    for bad in ({"quote": "x", "ledger_head": {"index": 1, "leaf_hash": "00" * 32}}, {"quote": {}}, []):
        payload["attestation"] = bad
        payload["nonce"] = fetch_window()["nonce"]
        with pytest.raises(MessageError):
            env.client.release(request_id, SignedMessage.sign(payload, session.identity))
    with pytest.raises(MessageError, match="policy.golden"):
        env.admin(admin.Proposal("policy.golden", {"host_class": HOST_CLASS, "pcrs": {"23": ["zz"]}}))
    assert attested.entries("key.released") == []
