"""Endorsement key certificates (TCG EK Credential Profile for TPM Family 2.0, clauses 2.2 and 3).

A TPM's EK certificate is an X.509 certificate its manufacturer issued for the EK's public key; the TPM
keeps it in NV (index 0x01C00002 for the RSA-2048 EK, 0x01C0000A for ECC P-256, 0x01C00016 for P-384).
Its subject is usually empty, with the TPM's manufacturer, model and firmware version in a critical
subjectAltName directoryName (OIDs 2.23.133.2.1-3), and its extended key usage is tcg-kp-EKCertificate
(2.23.133.8.1): not a TLS profile, so the leaf is checked with ``ExtensionPolicy.permit_all()`` while the
CA certificates keep the usual checks (basicConstraints CA, keyCertSign).

``verify_ek_certificate`` builds the chain with ``cryptography``'s verifier to one of the configured
manufacturer roots; ``check_ek_public`` then requires the EK public area the host presents (the one
credentials are encrypted to) to carry exactly the certified key and the EK template's attributes.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from strongroom.attest.errors import EkCertificateError, KeyAttributesError
from strongroom.attest.tpm2 import (
    ADMIN_WITH_POLICY,
    ALG_SHA256,
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    USER_WITH_AUTH,
    TpmPublic,
)

EK_CERTIFICATE_EKU = ObjectIdentifier("2.23.133.8.1")
TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
TPM_VERSION = ObjectIdentifier("2.23.133.2.3")
# TCG EK Credential Profile, B.3.3: the default EK authPolicy, PolicySecret(TPM_RH_ENDORSEMENT) under SHA-256.
EK_POLICY_SHA256 = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
EK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | ADMIN_WITH_POLICY | RESTRICTED | DECRYPT
MAX_CERTIFICATE = 8192


@dataclass(frozen=True)
class EkInfo:
    """A verified EK certificate: its DER, its SHA-256 fingerprint, the certified key (DER
    SubjectPublicKeyInfo), issuer, serial number, expiry, and the TPM manufacturer, model and firmware
    version from its subjectAltName (empty when absent)."""

    certificate: bytes
    fingerprint: bytes
    public_key: bytes
    issuer: str
    serial: int
    not_after: datetime.datetime
    manufacturer: str
    model: str
    version: str


def _pem_certificates(pems: Iterable[bytes], what: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for pem in pems:
        try:
            out.extend(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise EkCertificateError(f"{what} is not PEM certificates: {exc}") from None
    return out


def _san_attributes(cert: x509.Certificate) -> dict[ObjectIdentifier, str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    found: dict[ObjectIdentifier, str] = {}
    for name in san.get_values_for_type(x509.DirectoryName):
        for attribute in name:
            value = attribute.value
            found[attribute.oid] = value if isinstance(value, str) else value.hex()
    return found


def verify_ek_certificate(
    der: bytes,
    trusted_ca_pems: Iterable[bytes],
    *,
    intermediate_pems: Iterable[bytes] = (),
    at: datetime.datetime | None = None,
) -> EkInfo:
    """Verify an EK certificate (DER) chains to one of ``trusted_ca_pems`` (manufacturer roots) through
    ``intermediate_pems``, valid at ``at`` (now by default). Raises ``EkCertificateError``."""
    if not isinstance(der, bytes) or not 0 < len(der) <= MAX_CERTIFICATE:
        raise EkCertificateError(f"EK certificate must be 1-{MAX_CERTIFICATE} bytes of DER")
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise EkCertificateError(f"EK certificate is not DER X.509: {exc}") from None
    roots = _pem_certificates(trusted_ca_pems, "trusted manufacturer CAs")
    if not roots:
        raise EkCertificateError("no trusted manufacturer CA configured")
    intermediates = _pem_certificates(intermediate_pems, "intermediate CAs")
    when = at or datetime.datetime.now(datetime.UTC)
    ee_policy = ExtensionPolicy.permit_all().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ek_eku_ok)
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(when)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise EkCertificateError(f"EK certificate does not chain to a trusted manufacturer CA: {exc}") from None
    attributes = _san_attributes(leaf)
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return EkInfo(
        certificate=der,
        fingerprint=hashlib.sha256(der).digest(),
        public_key=spki,
        issuer=leaf.issuer.rfc4514_string(),
        serial=leaf.serial_number,
        not_after=leaf.not_valid_after_utc,
        manufacturer=attributes.get(TPM_MANUFACTURER, ""),
        model=attributes.get(TPM_MODEL, ""),
        version=attributes.get(TPM_VERSION, ""),
    )


def _ek_eku_ok(_policy: object, _cert: object, eku: x509.ExtendedKeyUsage | None) -> None:
    # EK Credential Profile 3.2.16: the EKU, when present, is tcg-kp-EKCertificate.
    if eku is not None and EK_CERTIFICATE_EKU not in list(eku):
        raise ValueError("extended key usage is not tcg-kp-EKCertificate (2.23.133.8.1)")


def check_ek_public(info: EkInfo, ek_public: TpmPublic) -> None:
    """Require ``ek_public`` (the TPMT_PUBLIC credentials get encrypted to) to hold the certified key and
    the EK template's shape (EK Credential Profile B.3.3/B.3.4): restricted decryption, fixedTPM,
    fixedParent, sensitiveDataOrigin, adminWithPolicy, userWithAuth clear, SHA-256 name, the default
    PolicySecret(ENDORSEMENT) authPolicy. Raises ``EkCertificateError`` or ``KeyAttributesError``."""
    certified = serialization.load_der_public_key(info.public_key)
    presented = ek_public.public_key()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if not isinstance(certified, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or (
        certified.public_bytes(serialization.Encoding.DER, spki)
        != presented.public_bytes(serialization.Encoding.DER, spki)
    ):
        raise EkCertificateError("the EK presented is not the key the EK certificate certifies")
    if not ek_public.has(EK_REQUIRED) or ek_public.attributes & (SIGN_ENCRYPT | USER_WITH_AUTH):
        raise KeyAttributesError(f"EK attributes 0x{ek_public.attributes:08x} are not the EK template's")
    if ek_public.name_alg != ALG_SHA256 or ek_public.auth_policy != EK_POLICY_SHA256:
        raise KeyAttributesError("EK is not of the default SHA-256 template (nameAlg, authPolicy)")
