"""A quorum release whose data key lives in a real KMS (OpenBao transit, 'bao server -dev' on loopback): the
custody service unwraps inside the KMS only after the release is logged; with the KMS gone, the release is
logged but nothing is delivered until the host fetches again with the KMS back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.custody.errors import UnavailableError
from strongroom.custody.loading import load_released
from strongroom.keys.devservers import OpenBaoDevServer, start_openbao_dev
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from tests.custody.conftest import deploy


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[OpenBaoDevServer]:
    server = start_openbao_dev(tmp_path / "openbao")
    yield server
    server.stop()


def test_release_with_openbao_and_fail_closed(bao: OpenBaoDevServer, model_dir: Path, tmp_path: Path) -> None:
    kms = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
    sealed = tmp_path / "sealed"
    model_id = seal_model(model_dir, sealed, kms)["model_id"]
    with SealedModel.inspect(sealed) as model:
        assert model.key.provider == kms.provider and model.key.binding.model_id == model_id
    with deploy(tmp_path / "srv", [kms], sealed) as env:
        host, _, request_id = env.approved()
        verified, summary = load_released(env.client, host, request_id, sealed)
        assert summary["tensors"] == 104 and summary["model_id"] == model_id and verified.tensors

        host2, _, request2 = env.approved()
        bao.stop()
        with pytest.raises(UnavailableError, match="503.*release logged .* could not be delivered"):
            env.client.release(request2, host2.fetch(request2))
        assert env.status(request2)["state"] == "released" and env.released_entries() == 2
        with pytest.raises(UnavailableError, match="503"):
            env.client.release(request2, host2.fetch(request2))  # still no KMS: still nothing delivered
