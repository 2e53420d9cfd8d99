"""The real MiniLM model sealed and loaded under every provider, including a full Shamir quorum release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from safetensors.numpy import load_file

from strongroom.keys.devservers import OpenBaoDevServer
from strongroom.keys.errors import QuorumRequiredError, UnwrapError
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.provider import KeyProvider, WrappedKey
from strongroom.keys.released import ReleasedKey
from strongroom.keys.shamir import ShamirProvider, custodian_reencrypt_share, host_combine
from strongroom.manifest.build import manifest_of_plain
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel, load_model_dir

from .conftest import MODEL_B, Custodians, rebind


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> dict[str, np.ndarray]:
    return load_file(model_dir / "model.safetensors")


def _assert_same(loaded: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert set(loaded) == set(reference)
    for name, array in reference.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name


def _seal_and_load(
    provider: KeyProvider, model_dir: Path, out: Path, reference: dict[str, np.ndarray], name: str
) -> WrappedKey:
    summary = seal_model(model_dir, out, provider)
    assert summary["key"]["provider"] == name and summary["key"]["key_id"] == provider.key_id
    assert summary["key"]["binding"] == {"seal_id": summary["seal_id"], "model_id": summary["model_id"]}
    _assert_same(load_model_dir(out, provider), reference)
    key = SealedModel.inspect(out).key
    assert key.binding.model_id == manifest_of_plain(model_dir).model_id
    return key


def test_pkcs11(pkcs11_provider: Pkcs11Provider, model_dir: Path, tmp_path: Path, reference: dict) -> None:
    _seal_and_load(pkcs11_provider, model_dir, tmp_path / "m", reference, "pkcs11")


def test_openbao(bao: OpenBaoDevServer, model_dir: Path, tmp_path: Path, reference: dict) -> None:
    with OpenBaoTransit(bao.address, bao.root_token, bao.key_name) as provider:
        _seal_and_load(provider, model_dir, tmp_path / "m", reference, "openbao")


def test_shamir_local_quorum(custodians: Custodians, model_dir: Path, tmp_path: Path, reference: dict) -> None:
    provider = ShamirProvider(custodians.public[:3], 2, local_custodian_keys=custodians.private[:2])
    _seal_and_load(provider, model_dir, tmp_path / "m", reference, "shamir")


def test_shamir_quorum_release_to_a_host(
    custodians: Custodians, model_dir: Path, tmp_path: Path, reference: dict
) -> None:
    """Seal under 2-of-3 custodians; nobody alone can open it; two custodians release it to one host."""
    sealer = ShamirProvider(custodians.public[:3], 2)
    out = tmp_path / "m"
    seal_model(model_dir, out, sealer)
    with pytest.raises(QuorumRequiredError):
        load_model_dir(out, sealer)

    wrapped = SealedModel.inspect(out).key  # what the custody service reads from the sealed model
    host = X25519PrivateKey.generate()  # the host's ephemeral key for this release
    release_id = b"release-7f3a"
    model_id = wrapped.binding.model_id  # each custodian states the model they approve
    shares = [
        custodian_reencrypt_share(wrapped, custodians.private[i], host.public_key(), release_id, model_id=model_id)
        for i in (2, 0)
    ]
    data_key = host_combine(wrapped, shares, host, release_id)
    with ReleasedKey(wrapped, data_key) as released:
        _assert_same(load_model_dir(out, released), reference)
        # The released key opens this model's blob only.
        other = SealedModel.inspect(out).key
        with pytest.raises(UnwrapError):
            released.unwrap(WrappedKey(other.provider, other.key_id, other.blob + b" ", other.binding))
        # Nor the same blob presented for another model id or seal id.
        with pytest.raises(UnwrapError, match="released for model"):
            released.unwrap(rebind(other, model_id=MODEL_B))
        with pytest.raises(UnwrapError, match="released for model"):
            released.unwrap(rebind(other, seal_id="0" * 32))
