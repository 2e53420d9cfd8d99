"""A cryptographic quorum that holds on its own: the data key is split 2-of-3 among custodians, and a
custodian's share leaves their key file only for a release already durable on the ledger, which their own
tool checks against the log's signed checkpoint. The service never holds the key; before the decision the
database holds nothing that combines into it, whoever copies it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.approver import Approver, Awaiting, Custodian
from strongroom.custody.errors import AwaitingSharesError, CustodyError, PolicyError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.protocol import new_share_delivery
from strongroom.custody.release_crypto import release_info
from strongroom.keys.errors import ModelMismatchError
from strongroom.keys.hpke import public_from_bytes
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider, custodian_reencrypt_share
from strongroom.ledger.client import LedgerClient
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv, deploy

CUSTODIANS = ("carol", "dave", "erin")


def custodian(env: CustodyEnv, who: str, keys: dict[str, X25519PrivateKey], tmp: Path) -> Custodian:
    vkey = env.services.ledger.signer.verifier.vkey
    return Custodian(
        env.client, LedgerClient(env.url), who, env.people[who], keys[who], tmp / f"{who}-audit.json", vkey,
        min_witnesses=0,
    )  # fmt: skip


def shares_in_a_copy(data: Path, copy: Path) -> int:
    """Copy the custody database as an insider would (with its WAL) and count the key shares in it."""
    copy.mkdir()
    for name in ("custody.sqlite3", "custody.sqlite3-wal", "custody.sqlite3-shm"):
        if (data / name).exists():
            shutil.copy(data / name, copy / name)
    with sqlite3.connect(copy / "custody.sqlite3") as db:
        rows = db.execute("SELECT share FROM custody_shares").fetchall()
        everything = " ".join(str(v) for table in ("custody_requests", "custody_approvals", "custody_releases")
                              for row in db.execute(f"SELECT * FROM {table}") for v in row)  # fmt: skip
    assert '"sealed"' not in everything  # no share hides in any other table either
    return len(rows)


def test_custodian_quorum_release(model_dir: Path, tmp_path: Path) -> None:
    keys = {name: X25519PrivateKey.generate() for name in CUSTODIANS}
    split = ShamirProvider([CustodianPublicKey(n, k.public_key()) for n, k in keys.items()], threshold=2)
    sealed = tmp_path / "sealed"
    seal_model(model_dir, sealed, split)
    people = [("alice", 3), ("bob", 4)] + [(n, 5) for n in CUSTODIANS]
    with deploy(tmp_path / "srv", [], sealed, people) as env:  # no key provider: the server unwraps nothing
        data, copies = tmp_path / "srv", iter(range(100))

        def copy() -> int:
            return shares_in_a_copy(data, tmp_path / f"copy-{next(copies)}")

        host, request, request_id = env.request()
        assert copy() == 0
        carol, dave = custodian(env, "carol", keys, tmp_path), custodian(env, "dave", keys, tmp_path)
        early = new_share_delivery(
            request_id, 0, "carol",
            custodian_reencrypt_share(split_key(sealed), keys["carol"], public_from_bytes(request.ephemeral),
                                      release_info(request_id, env.model_id, "gpu-01"), model_id=env.model_id),
            env.people["carol"],
        )  # fmt: skip
        with pytest.raises(PolicyError, match="no logged release: shares follow the decision"):
            env.client.deliver_share(request_id, early)
        for who in ("carol", "dave"):
            approver = Approver(env.client, who, env.people[who])
            approver.decide(approver.find(request_id))
            assert copy() == 0
        assert carol.awaiting() == []  # nothing to deliver before the decision
        with pytest.raises(AwaitingSharesError) as waiting:
            env.client.release(request_id, host.fetch(request_id))  # the decision is logged now
        assert (waiting.value.delivered, waiting.value.threshold) == (0, 2) and env.released_entries() == 1
        assert copy() == 0
        assert carol.deliver_all() == [(request_id, 1)]
        assert copy() == 1
        with pytest.raises(AwaitingSharesError):
            env.client.release(request_id, host.fetch(request_id))
        assert dave.deliver_all() == [(request_id, 2)]
        verified, summary = load_released(env.client, host, request_id, sealed)
        assert summary["tensors"] == 104 and verified.tensors
        assert carol.deliver_all() == []  # delivered once

        # A server that points a custodian at another entry gets no share.
        _, _, other_id = env.request()
        for who in ("carol", "erin"):
            approver = Approver(env.client, who, env.people[who])
            approver.decide(approver.find(other_id))
        with pytest.raises(AwaitingSharesError):
            env.client.release(other_id, HostSession("gpu-01", env.hosts["gpu-01"]).fetch(other_id))
        real = next(item for item in carol.awaiting() if item.request_id == other_id)
        with pytest.raises(CustodyError, match="is not the release of"):
            carol.deliver(Awaiting(real.request, summary["released_entry"]["index"], real.key))

        # A custodian's tool refuses to re-encrypt a share for a model the key is not bound to.
        with pytest.raises(ModelMismatchError):
            custodian_reencrypt_share(
                split_key(sealed), keys["dave"], X25519PrivateKey.generate().public_key(), b"ctx",
                model_id="blake3:" + "99" * 32,
            )  # fmt: skip


def test_a_share_for_another_host_does_not_open(model_dir: Path, tmp_path: Path) -> None:
    keys = {name: X25519PrivateKey.generate() for name in CUSTODIANS}
    split = ShamirProvider([CustodianPublicKey(n, k.public_key()) for n, k in keys.items()], threshold=2)
    sealed = tmp_path / "sealed"
    seal_model(model_dir, sealed, split)
    people = [("alice", 3), ("bob", 4)] + [(n, 5) for n in CUSTODIANS]
    with deploy(tmp_path / "srv", [], sealed, people) as env:
        host, _, request_id = env.request()
        for who in ("carol", "erin"):
            approver = Approver(env.client, who, env.people[who])
            approver.decide(approver.find(request_id))
        with pytest.raises(AwaitingSharesError):
            env.client.release(request_id, host.fetch(request_id))
        for who in ("carol", "erin"):
            custodian(env, who, keys, tmp_path).deliver_all()
        bundle = env.client.release(request_id, host.fetch(request_id))
        thief = HostSession("gpu-01", Signer.generate("ed25519"))
        with pytest.raises(CustodyError, match="does not open"):
            thief.open_release(bundle)
        host.open_release(bundle).close()


def split_key(sealed: Path) -> WrappedKey:
    with SealedModel.inspect(sealed) as model:
        return model.key
