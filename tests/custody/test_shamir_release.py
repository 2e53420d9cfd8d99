"""A cryptographic quorum: the data key is split 2-of-3 among custodians; approving custodians re-encrypt
their shares to the host; the service forwards them without ever holding the key; the host combines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.approver import Approver, share_for_request
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError, MessageError, PolicyError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.protocol import new_approval
from strongroom.keys.errors import ModelMismatchError
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider, custodian_reencrypt_share
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from strongroom.signing import Signer
from tests.custody.conftest import CustodyEnv, deploy

CUSTODIANS = ("carol", "dave", "erin")


def key_of(sealed: Path) -> WrappedKey:
    with SealedModel.inspect(sealed) as model:
        return model.key


def test_custodian_quorum_release(model_dir: Path, tmp_path: Path) -> None:
    custodian_keys = {name: X25519PrivateKey.generate() for name in CUSTODIANS}
    split = ShamirProvider([CustodianPublicKey(n, k.public_key()) for n, k in custodian_keys.items()], threshold=2)
    sealed = tmp_path / "sealed"
    seal_model(model_dir, sealed, split)
    with SealedModel.inspect(sealed) as model:
        assert model.key.provider == "shamir"
    people = [("alice", 3), ("bob", 4)] + [(n, 5) for n in CUSTODIANS]
    # No key provider at all: the server cannot unwrap anything.
    with deploy(tmp_path / "srv", [], sealed, people) as env:

        def approve(env: CustodyEnv, request_id: str, who: str, with_share: bool = True) -> None:
            approver = Approver(env.client, who, env.people[who], custodian_keys[who] if with_share else None)
            approver.decide(approver.find(request_id))

        # Two approve without shares: the policy holds, but no key can be delivered, and nothing is logged.
        host, _, request_id = env.request()
        approve(env, request_id, "carol", with_share=False)
        approve(env, request_id, "bob", with_share=False)
        with pytest.raises(PolicyError, match="0 of 2 custodian key shares"):
            env.client.release(request_id, host.fetch(request_id))
        assert env.released_entries() == 0

        # Two custodians approve with their shares: the host combines them and loads with verification.
        host, _, request_id = env.request()
        approve(env, request_id, "carol")
        approve(env, request_id, "dave")
        verified, summary = load_released(env.client, host, request_id, sealed)
        assert summary["tensors"] == 104 and verified.tensors
        # The ledger records what each custodian signed about their share, never the share itself.
        logged = env.services.ledger.query(type="key.released")[-1][1].body
        commitments = [SignedMessage.from_json(a, "a").payload["share"] for a in logged["approvals"]]
        assert sorted(c["index"] for c in commitments) == [1, 2] and all(
            set(c) == {"index", "digest"} for c in commitments
        )
        assert "sealed" not in json.dumps(logged)

        # A share sent beside an approval must be the one the approval signed for.
        _, request, request_id = env.request()
        carol_share = share_for_request(request, key_of(sealed), custodian_keys["carol"])
        dave_share = share_for_request(request, key_of(sealed), custodian_keys["dave"])
        approval = SignedMessage.sign(
            new_approval(request=request, approver="carol", share=carol_share), env.people["carol"]
        )
        with pytest.raises(MessageError, match="not the one the approval signed"):
            env.client.approve(request_id, approval, dave_share)
        with pytest.raises(MessageError, match="does not commit to"):
            env.client.approve(
                request_id,
                SignedMessage.sign(new_approval(request=request, approver="carol"), env.people["carol"]),
                carol_share,
            )

        # A share re-encrypted for another host does not open for this one.
        other, _, request_id = env.request()
        approve(env, request_id, "carol")
        approve(env, request_id, "erin")
        bundle = env.client.release(request_id, other.fetch(request_id))
        thief = HostSession("gpu-01", Signer.generate("ed25519"))
        with pytest.raises(CustodyError, match="does not open"):
            thief.open_release(bundle)
        other.open_release(bundle).close()

        # A custodian's tool refuses to re-encrypt a share for a model the key is not bound to.
        with SealedModel.inspect(sealed) as model:
            key = model.key
        with pytest.raises(ModelMismatchError):
            custodian_reencrypt_share(
                key,
                custodian_keys["dave"],
                X25519PrivateKey.generate().public_key(),
                b"ctx",
                model_id="blake3:" + "99" * 32,
            )
