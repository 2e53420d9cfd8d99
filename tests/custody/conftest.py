"""A running custody service on loopback (real ledger, real HTTP), a sealed real model and three people."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from strongroom.custody.admin import model_registration, pending_query, person_change
from strongroom.custody.client import CustodyClient
from strongroom.custody.host import HostSession
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.policy import ModelPolicy
from strongroom.keys import LocalKeyring
from strongroom.manifest.build import manifest_of_plain
from strongroom.people import agreement_message
from strongroom.seal import SealedModel, seal_path
from strongroom.server.app import Services, create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer

AGREEMENT = "sha256:" + "42" * 32
PEOPLE = [("alice", 3), ("bob", 4), ("erin", 4), ("carol", 5), ("dave", 5)]


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

    def request(self, who: str = "alice", host: HostSession | None = None) -> tuple[HostSession, SignedMessage, str]:
        host = host or HostSession("gpu-01", Signer.generate("ed25519"))
        message = SignedMessage.sign(host.request_payload(self.model_id, "evaluation", who), self.people[who])
        return host, message, self.client.submit_request(message)

    def approve(self, request: SignedMessage, who: str, decision: str = "approve") -> int:
        approval = SignedMessage.sign(new_approval(request=request, approver=who, decision=decision), self.people[who])
        return self.client.approve(request.digest, approval)

    def change(self, change: dict[str, object]) -> None:
        self.client.change_person(person_change(change, self.services.operator))

    def pending_for(self, who: str) -> list[dict[str, object]]:
        return self.client.pending(pending_query(who, self.people[who]))


def enrol(
    client: CustodyClient, officer: Signer, people: list[tuple[str, int]], agreement: str | None = None
) -> dict[str, Signer]:
    """Enrol each (person, tier) with a fresh Ed25519 key (SenL-5 ones as custodians), vetted 30 days ago."""
    keys: dict[str, Signer] = {}
    vetted = (date.today() - timedelta(days=30)).isoformat()
    for person, tier in people:
        keys[person] = Signer.generate("ed25519")
        client.change_person(
            person_change(
                {
                    "change": "enrol",
                    "person": person,
                    "name": person.title(),
                    "public_key": keys[person].verifier.pem().decode(),
                    "position": f"SenL-{tier}",
                    "tier": tier,
                    "custodian": tier == 5,
                    "vetted_on": vetted,
                },
                officer,
            )
        )
        if agreement is not None:
            signature = base64.b64encode(keys[person].sign(agreement_message(person, agreement))).decode()
            client.change_person(
                person_change(
                    {"change": "agreement", "person": person, "agreement": agreement, "signature": signature}, officer
                )
            )
    return keys


@pytest.fixture(scope="module")
def sealed_minilm(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("custody-model")
    LocalKeyring.init(root / "keys", passphrase="custody", scrypt_n=2**10).close()
    ring = LocalKeyring.open(root / "keys", passphrase="custody")
    seal_path(model_dir, root / "sealed", ring)
    ring.close()
    return root / "keys", root / "sealed", manifest_of_plain(model_dir).model_id


@pytest.fixture
def env(tmp_path: Path, sealed_minilm: tuple[Path, Path, str]) -> Iterator[CustodyEnv]:
    keydir, sealed, model_id = sealed_minilm
    keyring = LocalKeyring.open(keydir, passphrase="custody")
    data = tmp_path / "server"
    services = open_services(data, providers=[keyring])
    with BackgroundServer(create_app(services, data)) as url:
        client = CustodyClient(url)
        with SealedModel.inspect(sealed) as model:
            key = model.key
        client.register_model(
            model_registration(ModelPolicy(model_id, 3, 2), key, {"training_run": "test"}, services.operator)
        )
        people = enrol(client, services.operator, PEOPLE, AGREEMENT)
        yield CustodyEnv(url, data, services, client, keyring, sealed, model_id, people)
        client.close()
    services.close()
    keyring.close()
