"""Custody with keys inside a real SoftHSM2 token: people request and approve, officers co-sign administrative
changes, and a host fetches, loads and reports, each signing in the token; the service verifies them all like
file keys, since their signatures and key ids are the same kind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from strongroom.custody import admin
from strongroom.custody.approver import Approver
from strongroom.custody.audit import audit_custody
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError, MessageError, NotAuthorisedError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.protocol import Authority, Officer
from strongroom.custody.service import CustodyService
from strongroom.custody.session_file import load_session, save_session
from strongroom.custody.store import CustodyStore
from strongroom.keys import LocalKeyring
from strongroom.keys.pkcs11_signer import Pkcs11Signer, TokenAccess, generate_token_signer
from strongroom.ledger.log import Ledger
from strongroom.manifest.sealing import seal_model
from strongroom.people import PeopleError
from strongroom.signing import Signer, SigningKey
from tests.custody.conftest import AGREEMENT, deploy
from tests.keys.conftest import HSM_PIN, Hsm
from tests.keys.test_token_signer import label

PASSPHRASE = "token custody walnut lagoon"


@pytest.fixture(scope="module")
def token(hsm: Hsm) -> Iterator[dict[str, Pkcs11Signer]]:
    """Keys generated in the token: people tina (requester) and tom (approver), host gpu-tok, officers olga
    (ECDSA P-256, the mechanism a PIV card without EdDSA would use) and otto (Ed25519)."""
    access = TokenAccess(hsm.main.module, hsm.main.label, HSM_PIN)
    kinds = {"tina": "ed25519", "tom": "ed25519", "gpu-tok": "ed25519", "olga": "ecdsa-p256", "otto": "ed25519"}
    keys = {name: generate_token_signer(access, label(name), kind) for name, kind in kinds.items()}  # type: ignore[arg-type]
    yield keys
    for key in keys.values():
        key.close()


def person(name: str, key: SigningKey, tier: int, custodian: bool = False) -> admin.Proposal:
    return admin.enrol_person(
        name,
        name=name.title(),
        public_key=key.verifier.pem().decode(),
        position=f"SenL-{tier}",
        tier=tier,
        custodian=custodian,
        vetted_on=date.today() - timedelta(days=3),
    )


def test_officers_cosign_with_token_keys_and_the_gate_verifies(tmp_path: Path, token: dict[str, Pkcs11Signer]) -> None:
    oscar = Signer.generate("ed25519")  # a file key beside the token keys
    officers: dict[str, SigningKey] = {"olga": token["olga"], "oscar": oscar, "otto": token["otto"]}
    authority = Authority(tuple(Officer(n, k.verifier) for n, k in officers.items()), 2, AGREEMENT)
    ledger = Ledger.open(tmp_path)
    store = CustodyStore.for_data_dir(tmp_path)
    service = CustodyService(store, ledger, Signer.generate("ed25519"), [], genesis=authority)
    try:
        with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers, signed by 1"):
            service.admin(admin.propose(person("tina", token["tina"], 3), [token["olga"]]))
        # A token officer (ECDSA) and a file officer sign together.
        done = service.admin(admin.propose(person("tina", token["tina"], 3), [token["olga"], oscar]))
        assert done["officers"] == ["olga", "oscar"]
        # A change proposed by one token officer and co-signed later by another.
        proposal = admin.propose(person("tom", token["tom"], 4), [token["olga"]])
        assert proposal.cosign(token["olga"]) == proposal  # the same key twice counts once
        assert service.admin(proposal.cosign(token["otto"]))["officers"] == ["olga", "otto"]
        # The person signs the access agreement inside the token; the service checks it under the enrolled key.
        agreed = admin.record_agreement("tina", AGREEMENT, token["tina"])
        service.admin(admin.propose(agreed, [token["otto"], oscar]))
        forged = admin.record_agreement("tom", AGREEMENT, token["tina"])  # tina's token signing for tom
        with pytest.raises(PeopleError, match="signature does not verify"):
            service.admin(admin.propose(forged, [token["olga"], oscar]))
        # A token key that is no officer's cannot sign changes.
        with pytest.raises(NotAuthorisedError, match="not an officer"):
            service.admin(admin.propose(person("mallory", Signer.generate("ed25519"), 3), [token["tom"], oscar]))
        assert set(service.state.people.people) == {"tina", "tom"}
    finally:
        store.close()
        ledger.close()


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("token-custody-model")
    LocalKeyring.init(root / "keys", passphrase=PASSPHRASE, scrypt_n=2**10).close()
    ring = LocalKeyring.open(root / "keys", passphrase=PASSPHRASE)
    seal_model(model_dir, root / "sealed", ring)
    ring.close()
    return root / "keys", root / "sealed"


def test_request_approve_fetch_load_with_token_keys(
    tmp_path: Path, sealed: tuple[Path, Path], token: dict[str, Pkcs11Signer]
) -> None:
    keydir, sealed_dir = sealed
    keyring = LocalKeyring.open(keydir, passphrase=PASSPHRASE)
    try:
        with deploy(tmp_path / "server", [keyring], sealed_dir, people=[("carol", 5)], keyring=keyring) as env:
            for name, tier in (("tina", 3), ("tom", 4)):
                env.admin(person(name, token[name], tier))
                env.admin(admin.record_agreement(name, AGREEMENT, token[name]))
            env.admin.enrol_host("gpu-tok", token["gpu-tok"])  # type: ignore[arg-type]
            host = HostSession("gpu-tok", token["gpu-tok"])
            payload = host.request_payload(env.model_id, "evaluation", "tina")
            request_id = env.client.submit_request(SignedMessage.sign(payload, token["tina"]))
            # The host session file survives between 'request' and 'load' under the token host key alone.
            session_file = tmp_path / "gpu-tok.session"
            save_session(session_file, host, request_id, env.model_id, env.url)
            host, header = load_session(session_file, token["gpu-tok"])
            assert header["request_id"] == request_id
            with pytest.raises(CustodyError, match="does not open with this host key"):
                load_session(session_file, token["tom"])
            tom = Approver(env.client, "tom", token["tom"])
            (pending,) = tom.pending()  # the pending query is signed in the token too
            assert pending.request_id == request_id and pending.host["name"] == "gpu-tok.dc1"
            assert tom.decide(pending, "approve") == 1
            carol = Approver(env.client, "carol", env.people["carol"])
            assert carol.decide(carol.find(request_id[:12]), "approve") == 2
            _, summary = load_released(env.client, host, request_id, env.sealed)  # fetch and report: token-signed
            assert summary["tensors"] == 104 and summary["approvers"] == ["carol", "tom"]
            audit = audit_custody(env.services.ledger.scan())
            assert audit.ok, audit.problems
            (release,) = audit.releases
            assert release["verified"] and release["loads"][0]["host"] == "gpu-tok"
            # A file key claiming to be the token host is refused.
            impostor = HostSession("gpu-tok", Signer.generate("ed25519"))
            with pytest.raises(MessageError, match="only the requesting host"):
                env.client.release(request_id, impostor.fetch(request_id))
    finally:
        keyring.close()
