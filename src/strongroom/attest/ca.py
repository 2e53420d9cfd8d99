"""A stand-in TPM manufacturer: a P-256 certificate authority that signs swtpm's EK certificates.

Real TPMs carry an EK certificate from their manufacturer (Infineon, STMicroelectronics, Nuvoton, ...);
verifiers trust the manufacturer's root. ``TestManufacturerCa`` plays that role for tests, the demo and the
benchmarks: ``swtpm_setup --create-ek-cert`` signs through ``swtpm_localca`` with its key, and its PEM is
what a verifier is configured to trust. Its key file is plain PKCS#8 PEM on disk: it is a test fixture,
never a production CA.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TestManufacturerCa:
    """A self-signed P-256 CA: ``key_path`` (PKCS#8 PEM, mode 0600) and ``cert_path`` (PEM) in ``directory``."""

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    name: str

    @property
    def key_path(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca-cert.pem"

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate: what a verifier trusts."""
        return self.cert_path.read_bytes()

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @classmethod
    def create(
        cls, directory: Path, name: str = "Strongroom Test TPM Manufacturer", *, days: int = 3650
    ) -> TestManufacturerCa:
        """Make a new CA in ``directory`` (created, mode 0700)."""
        directory = Path(directory).absolute()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA"),
        ])  # fmt: skip
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        ca = cls(directory, name)
        write_file(ca.key_path, key_pem, mode=0o600)
        write_file(ca.cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return ca

    def localca_config(self, statedir: Path) -> Path:
        """Write the ``swtpm_localca`` configuration naming this CA (absolute paths) into ``statedir`` (private
        to one TPM, so serial numbers never collide between TPMs that run at once) and return its path."""
        statedir = Path(statedir).absolute()
        statedir.mkdir(mode=0o700, parents=True, exist_ok=True)
        serial = statedir / "certserial"
        if not serial.exists():
            # a serial file ending in a newline resets swtpm_localca's serials to 1: write digits only
            write_file(serial, str(int.from_bytes(os.urandom(6), "big") | 1).encode(), mode=0o600)
        conf = statedir / "swtpm-localca.conf"
        text = (
            f"statedir = {statedir}\n"
            f"signingkey = {self.key_path}\n"
            f"issuercert = {self.cert_path}\n"
            f"certserial = {serial}\n"
        )
        write_file(conf, text.encode(), mode=0o600)
        return conf


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create or replace ``path`` with ``data``, created with ``mode`` (test fixtures: no fsync needed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
