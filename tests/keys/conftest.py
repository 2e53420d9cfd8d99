"""Fixtures for key-provider tests: a real SoftHSM2 token, a real OpenBao dev server, custodian keys."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.keys.devservers import OpenBaoDevServer, SoftHsmToken, init_softhsm, start_openbao_dev
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.provider import KeyBinding, WrappedKey
from strongroom.keys.shamir import CustodianPublicKey

HSM_PIN = "1234-test-pin"
KEK_LABEL = "strongroom-kek"
MODEL_A = "blake3:" + "a1" * 32
MODEL_B = "sha256:" + "b2" * 32


def bind(model_id: str | None = MODEL_A) -> KeyBinding:
    """A fresh binding: a new random seal id and the given model id (MODEL_A unless told otherwise)."""
    return KeyBinding(secrets.token_hex(16), model_id)


def rebind(wrapped: WrappedKey, **changes: str | None) -> WrappedKey:
    """The same provider, key id and blob under an edited binding (``seal_id=``, ``model_id=``): what an
    insider would register under a made-up model id."""
    return dataclasses.replace(wrapped, binding=dataclasses.replace(wrapped.binding, **changes))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Hsm:
    """The session's SoftHSM2 tokens: ``main`` holds the KEK, ``other`` is an empty second token."""

    main: SoftHsmToken
    other: SoftHsmToken


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Hsm:
    """Tokens created before the PKCS#11 module is first loaded (SoftHSM2 reads SOFTHSM2_CONF once)."""
    directory = tmp_path_factory.mktemp("softhsm")
    main, other = init_softhsm(directory, ["strongroom-test", "other-token"], HSM_PIN)
    os.environ["SOFTHSM2_CONF"] = str(main.conf)
    return Hsm(main, other)


@pytest.fixture(scope="session")
def pkcs11_provider(hsm: Hsm) -> Iterator[Pkcs11Provider]:
    """A provider whose KEK was generated in the token on first open."""
    provider = Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, KEK_LABEL, create_key=True)
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoDevServer]:
    """``bao server -dev`` on a free 127.0.0.1 port with transit and the key ``strongroom``."""
    server = start_openbao_dev(tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def transit(bao: OpenBaoDevServer) -> Iterator[OpenBaoTransit]:
    """The OpenBao transit provider on the session's dev server and its key ``strongroom``."""
    provider = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
    yield provider
    provider.close()


@dataclass(frozen=True)
class Custodians:
    """Five custodians' X25519 key pairs, as the provider (public) and each custodian (private) hold them."""

    private: list[X25519PrivateKey]
    public: list[CustodianPublicKey]


@pytest.fixture(scope="session")
def custodians() -> Custodians:
    private = [X25519PrivateKey.generate() for _ in range(5)]
    names = ["alice", "bob", "carol", "dave", "erin"]
    return Custodians(private, [CustodianPublicKey(n, k.public_key()) for n, k in zip(names, private, strict=True)])


@pytest.fixture
def write_settings(tmp_path: Path) -> object:
    """Write a TOML settings file into the test's temp dir and return its path."""

    def write(text: str, name: str = "keys.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
