"""A running custody service on loopback (real ledger, real HTTP), a sealed real model, officers, people, a host."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from strongroom.custody import admin
from strongroom.custody.approver import Approver, Pending
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.host import HostSession
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import OFFICER_READER, ReleaseRequest, new_approval, new_read_query
from strongroom.keys import LocalKeyring
from strongroom.keys.provider import KeyProvider
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from strongroom.server.app import Services, create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer

AGREEMENT = "sha256:" + "42" * 32
PEOPLE = [("alice", 3), ("bob", 4), ("erin", 4), ("carol", 5), ("dave", 5)]
OFFICERS = ("olga", "oscar", "otto")
TWO = ("olga", "oscar")
PASSPHRASE = "custody quartz meadow ferry"
SERVER_ENV = {"STRONGROOM_SERVER_PASSPHRASE": "server keys sextant marigold"}  # what `serve` encrypts its keys under


def make_officers(data: Path, names: tuple[str, ...] = OFFICERS) -> dict[str, Signer]:
    """Officer keys, their public halves in DATA/officers (the genesis authority on first start)."""
    data.mkdir(mode=0o700, parents=True, exist_ok=True)  # a server's data directory is private
    (data / "officers").mkdir(exist_ok=True)
    keys = {}
    for name in names:
        keys[name] = Signer.generate("ed25519")
        (data / "officers" / f"{name}.pub").write_bytes(keys[name].verifier.pem())
    return keys


@dataclass
class Admin:
    """Officers submitting co-signed changes through one client."""

    client: CustodyClient
    officers: dict[str, Signer]

    def __call__(self, proposal: admin.Proposal, *names: str) -> dict[str, Any]:
        signers = [self.officers[n] for n in (names or TWO)]
        return self.client.admin(admin.propose(proposal, signers))

    def enrol(self, people: list[tuple[str, int]], agreement: str | None = AGREEMENT) -> dict[str, Signer]:
        """Enrol each (person, tier) with a fresh Ed25519 key (SenL-5 ones as custodians), vetted 30 days ago."""
        keys: dict[str, Signer] = {}
        for person, tier in people:
            keys[person] = Signer.generate("ed25519")
            self(
                admin.enrol_person(
                    person,
                    name=person.title(),
                    public_key=keys[person].verifier.pem().decode(),
                    position=f"SenL-{tier}",
                    tier=tier,
                    custodian=tier == 5,
                    vetted_on=date.today() - timedelta(days=30),
                )
            )
            if agreement is not None:
                self(admin.record_agreement(person, agreement, keys[person]))
        return keys

    def enrol_host(self, host_id: str, key: Signer | None = None) -> Signer:
        key = key or Signer.generate("ed25519")
        self(
            admin.enrol_host(
                host_id,
                name=f"{host_id}.dc1",
                site="dc1 rack 4",
                owner="platform",
                public_key=key.verifier.pem().decode(),
            )
        )
        return key


@dataclass
class CustodyEnv:
    url: str
    data: Path
    services: Services
    client: CustodyClient
    keyring: LocalKeyring
    sealed: Path
    model_id: str
    people: dict[str, Signer]
    officers: dict[str, Signer]
    admin: Admin
    hosts: dict[str, Signer] = field(default_factory=dict)

    def session(self, host_id: str = "gpu-01") -> HostSession:
        return HostSession(host_id, self.hosts[host_id])

    def request(
        self, who: str = "alice", host: HostSession | None = None, model_id: str | None = None
    ) -> tuple[HostSession, ReleaseRequest, str]:
        host = host or self.session()
        payload = host.request_payload(model_id or self.model_id, "evaluation", who)
        signed = SignedMessage.sign(payload, self.people[who])
        return host, ReleaseRequest.parse(signed), self.client.submit_request(signed)

    def approve(self, request: ReleaseRequest, who: str, decision: str = "approve") -> int:
        approval = SignedMessage.sign(new_approval(request=request, approver=who, decision=decision), self.people[who])
        return self.client.approve(request.request_id, approval)

    def approved(self, who: str = "alice") -> tuple[HostSession, ReleaseRequest, str]:
        """A request with its two approvals (bob, carol), ready to release."""
        host, request, request_id = self.request(who)
        self.approve(request, "bob")
        self.approve(request, "carol")
        return host, request, request_id

    def status(self, request_id: str) -> dict[str, Any]:
        """A request's status, read by an officer (reads are signed)."""
        return self.client.read(new_read_query(OFFICER_READER, f"request:{request_id}", self.officers["olga"]))

    def pending_for(self, who: str) -> list[Pending]:
        return Approver(self.client, who, self.people[who]).pending()

    def released_entries(self) -> int:
        return len(self.services.ledger.query(type="key.released"))


@pytest.fixture(scope="module")
def sealed_minilm(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("custody-model")
    LocalKeyring.init(root / "keys", passphrase=PASSPHRASE, scrypt_n=2**10).close()
    ring = LocalKeyring.open(root / "keys", passphrase=PASSPHRASE)
    summary = seal_model(model_dir, root / "sealed", ring)
    ring.close()
    return root / "keys", root / "sealed", str(summary["model_id"])


@contextlib.contextmanager
def deploy(
    data: Path,
    providers: list[KeyProvider],
    sealed: Path,
    people: list[tuple[str, int]] = PEOPLE,
    keyring: LocalKeyring | None = None,
) -> Iterator[CustodyEnv]:
    """A served custody deployment: three officers (two to co-sign), the sealed model registered (SenL-3, two
    approvals), ``people`` enrolled with the access agreement, and host gpu-01 enrolled."""
    officers = make_officers(data)
    services = open_services(data, providers=providers, agreement=AGREEMENT)
    with BackgroundServer(create_app(services, data)) as url:
        client = CustodyClient(url)
        officer_admin = Admin(client, officers)
        with SealedModel.inspect(sealed) as model:
            key = model.key
        model_id = key.binding.model_id
        assert model_id is not None
        officer_admin(admin.register_model(ModelPolicy(model_id, 3, 2), key, {"training_run": "test"}))
        enrolled = officer_admin.enrol(people)
        env = CustodyEnv(url, data, services, client, keyring, sealed, model_id, enrolled, officers, officer_admin)  # type: ignore[arg-type]
        env.hosts["gpu-01"] = officer_admin.enrol_host("gpu-01")
        yield env
        client.close()
    services.close()


@pytest.fixture
def env(tmp_path: Path, sealed_minilm: tuple[Path, Path, str]) -> Iterator[CustodyEnv]:
    keydir, sealed, _ = sealed_minilm
    keyring = LocalKeyring.open(keydir, passphrase=PASSPHRASE)
    with deploy(tmp_path / "server", [keyring], sealed, keyring=keyring) as env:
        yield env
    keyring.close()
