"""A cryptographic quorum: the data key is split 2-of-3 among custodians; approving custodians re-encrypt
their shares to the host; the service forwards them without ever holding the key; the host combines."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.admin import model_registration, pending_query
from strongroom.custody.client import CustodyClient
from strongroom.custody.custodian import share_for_request
from strongroom.custody.errors import CustodyError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.policy import ModelPolicy
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider
from strongroom.manifest.build import manifest_of_plain
from strongroom.seal import SealedModel, seal_path
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer
from tests.custody.conftest import enrol


def test_custodian_quorum_release(model_dir: Path, tmp_path: Path) -> None:
    custodian_keys = {name: X25519PrivateKey.generate() for name in ("carol", "dave", "erin")}
    split = ShamirProvider([CustodianPublicKey(n, k.public_key()) for n, k in custodian_keys.items()], threshold=2)
    sealed = tmp_path / "sealed"
    seal_path(model_dir, sealed, split)
    with SealedModel.inspect(sealed) as model:
        key = model.key
    assert key.provider == "shamir"
    model_id = manifest_of_plain(model_dir).model_id
    services = open_services(tmp_path / "srv")  # no key provider at all: the server cannot unwrap anything
    with BackgroundServer(create_app(services, tmp_path / "srv")) as url:
        client = CustodyClient(url)
        client.register_model(model_registration(ModelPolicy(model_id, 3, 2), key, {}, services.operator))
        people = enrol(
            client,
            services.operator,
            [(n, t) for n, t in [("alice", 3), ("bob", 4)]] + [(n, 5) for n in ("carol", "dave", "erin")],
        )

        def request() -> tuple[HostSession, SignedMessage, str]:
            host = HostSession("gpu-split", Signer.generate("ed25519"))
            message = SignedMessage.sign(host.request_payload(model_id, "eval", "alice"), people["alice"])
            return host, message, client.submit_request(message)

        def approve(message: SignedMessage, request_id: str, who: str, with_share: bool = True) -> None:
            pending = [p for p in client.pending(pending_query(who, people[who])) if p["request_id"] == request_id]
            share = None
            if with_share:
                share = share_for_request(message, WrappedKey.from_json(pending[0]["key"]), custodian_keys[who])
            client.approve(
                request_id, SignedMessage.sign(new_approval(request=message, approver=who, share=share), people[who])
            )

        # Two custodians approve without shares: policy holds, but the key cannot be delivered.
        host, message, request_id = request()
        approve(message, request_id, "carol", with_share=False)
        approve(message, request_id, "bob", with_share=False)
        with pytest.raises(CustodyError, match="0 of 2 custodian key shares"):
            client.release(request_id, host.fetch(request_id))

        # Two custodians approve with their shares: the host combines them and loads with verification.
        host, message, request_id = request()
        approve(message, request_id, "carol")
        approve(message, request_id, "dave")
        verified, summary = load_released(client, host, request_id, sealed)
        assert summary["tensors"] == 104 and verified.tensors
        released = services.ledger.query(type="key.released")[-1][1].body
        assert sorted(s["index"] for s in released["custodian_shares"]) == [1, 2]

        # A share re-encrypted for another host does not open for this one.
        other, message, request_id = request()
        approve(message, request_id, "carol")
        approve(message, request_id, "erin")
        bundle = client.release(request_id, other.fetch(request_id))
        thief = HostSession("gpu-split", Signer.generate("ed25519"))
        with pytest.raises(CustodyError, match="does not open"):
            thief.open_release(bundle)
        other.open_release(bundle).close()
    services.close()
