"""A quorum release whose data key lives in a real KMS (OpenBao transit, 'bao server -dev' on loopback):
the custody service unwraps inside the KMS, and stopping the KMS makes releases fail closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.custody.admin import model_registration
from strongroom.custody.client import CustodyClient
from strongroom.custody.errors import UnavailableError
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.policy import ModelPolicy
from strongroom.keys.devservers import OpenBaoDevServer, start_openbao_dev
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.manifest.build import manifest_of_plain
from strongroom.seal import SealedModel, seal_path
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer
from tests.custody.conftest import enrol


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[OpenBaoDevServer]:
    server = start_openbao_dev(tmp_path / "openbao")
    yield server
    server.stop()


def test_release_with_openbao_and_fail_closed(bao: OpenBaoDevServer, model_dir: Path, tmp_path: Path) -> None:
    kms = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
    sealed = tmp_path / "sealed"
    seal_path(model_dir, sealed, kms)
    with SealedModel.inspect(sealed) as model:
        key = model.key
    assert key.provider == kms.provider
    model_id = manifest_of_plain(model_dir).model_id
    services = open_services(tmp_path / "srv", providers=[kms])
    with BackgroundServer(create_app(services, tmp_path / "srv")) as url:
        client = CustodyClient(url)
        client.register_model(model_registration(ModelPolicy(model_id, 3, 2), key, {}, services.operator))
        people = enrol(client, services.operator, [("alice", 3), ("bob", 4), ("carol", 5)])

        def approved_request() -> tuple[HostSession, str]:
            host = HostSession("gpu-kms", Signer.generate("ed25519"))
            request = SignedMessage.sign(host.request_payload(model_id, "eval", "alice"), people["alice"])
            request_id = client.submit_request(request)
            for approver in ("bob", "carol"):
                approval = SignedMessage.sign(new_approval(request=request, approver=approver), people[approver])
                client.approve(request_id, approval)
            return host, request_id

        host, request_id = approved_request()
        verified, summary = load_released(client, host, request_id, sealed)
        assert summary["tensors"] == 104 and summary["model_id"] == model_id and verified.tensors

        host2, request2 = approved_request()
        bao.stop()
        with pytest.raises(UnavailableError, match="503"):
            client.release(request2, host2.fetch(request2))
        assert client.status(request2)["state"] == "pending"
        assert len(services.ledger.query(type="key.released")) == 1
    services.close()
