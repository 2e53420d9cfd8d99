"""Fixtures for the attestation tests: real swtpm TPMs with EK certificates from a test manufacturer CA.

Two TPMs ("A", the enrolled host, and "B", another machine) run for the whole session; tests that change
PCRs reset PCRs 16 and 23 first (both resettable in swtpm), so one long-lived TPM serves them all. A test
that needs a TPM of its own (a different AK) asks for ``fresh_tpm``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.enrol import EnrolledTpm, EnrolmentEvidence, begin_enrolment, finish_enrolment
from strongroom.attest.golden import GoldenValues
from strongroom.attest.host import HostTpm
from strongroom.attest.identity import AkPublic
from strongroom.attest.loader import loader_digest
from strongroom.attest.pcrs import TEST_LAYOUT
from strongroom.attest.swtpm import SoftwareTpm

HOST_CLASS = "inference"


def identity_pem() -> bytes:
    """A fresh Ed25519 host identity public key (PEM)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Host:
    """One running swtpm with a connected HostTpm, its identity key and (once created) its AK."""

    swtpm: SoftwareTpm
    tpm: HostTpm
    identity: bytes
    ak: AkPublic

    def reset_pcrs(self) -> None:
        self.tpm.reset(TEST_LAYOUT.loader)
        self.tpm.reset(TEST_LAYOUT.model)


def start_host(ca: TestManufacturerCa) -> Host:
    swtpm = SoftwareTpm(ca).start()
    try:
        tpm = HostTpm(swtpm.tcti)
        identity = identity_pem()
        return Host(swtpm, tpm, identity, tpm.create_ak(identity))
    except BaseException:
        swtpm.stop()
        raise


def stop_host(host: Host) -> None:
    host.tpm.close()
    host.swtpm.stop()


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestManufacturerCa:
    return TestManufacturerCa.create(tmp_path_factory.mktemp("manufacturer"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestManufacturerCa:
    return TestManufacturerCa.create(tmp_path_factory.mktemp("untrusted"), "Untrusted Manufacturer")


@pytest.fixture(scope="session")
def host_a(ca: TestManufacturerCa) -> Iterator[Host]:
    host = start_host(ca)
    yield host
    stop_host(host)


@pytest.fixture(scope="session")
def host_b(ca: TestManufacturerCa) -> Iterator[Host]:
    host = start_host(ca)
    yield host
    stop_host(host)


@pytest.fixture
def fresh_host(ca: TestManufacturerCa) -> Iterator[Host]:
    """A TPM of this test's own."""
    host = start_host(ca)
    yield host
    stop_host(host)


@pytest.fixture
def a(host_a: Host) -> Host:
    """Host A with its loader and model PCRs back at zero."""
    host_a.reset_pcrs()
    return host_a


@pytest.fixture
def b(host_b: Host) -> Host:
    host_b.reset_pcrs()
    return host_b


def evidence_of(host: Host) -> EnrolmentEvidence:
    return EnrolmentEvidence(host.tpm.ek_certificate(), host.tpm.ek_public(), host.ak)


@pytest.fixture(scope="session")
def enrolled_a(host_a: Host, ca: TestManufacturerCa) -> EnrolledTpm:
    """Host A, enrolled: EK chain, AK birth certificate, credential activation."""
    enrolled, challenge, secret = begin_enrolment(evidence_of(host_a), host_a.identity, [ca.cert_pem])
    return finish_enrolment(enrolled, secret, host_a.tpm.activate_credential(challenge))


@pytest.fixture(scope="session")
def loader() -> bytes:
    """The loader digest of the strongroom package these tests run."""
    return loader_digest()


@pytest.fixture(scope="session")
def golden(loader: bytes) -> GoldenValues:
    return GoldenValues.for_loader(HOST_CLASS, [loader], TEST_LAYOUT)


@pytest.fixture(scope="session")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the strongroom package, for tests that modify the loader."""
    import shutil

    import strongroom

    dst = tmp_path_factory.mktemp("loader") / "strongroom"
    shutil.copytree(Path(strongroom.__file__).parent, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst
