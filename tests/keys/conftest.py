"""Fixtures for key-provider tests: a real SoftHSM2 token, a real OpenBao dev server, custodian keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.keys.devservers import OpenBaoDevServer, SoftHsmToken, init_softhsm, start_openbao_dev
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.shamir import CustodianPublicKey

HSM_PIN = "1234-test-pin"
KEK_LABEL = "strongroom-kek"


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
