"""The attestation key's birth certificate: which TPM storage key it was created under and which host
identity key it was created for (TPM 2.0 Library Part 3, 12.1 TPM2_Create and 18.3 TPM2_CertifyCreation;
Part 2, 15.1 TPMS_CREATION_DATA and 10.12.7 TPMS_CREATION_INFO).

How the host's Ed25519 identity key is bound to its TPM. A TPM cannot hold an Ed25519 key, so the binding
goes the other way: the host creates its AK with ``outsideInfo = identity_digest(identity public key)``.
TPM2_Create returns the creation data (holding that outsideInfo and the parent's name) and a creation
ticket, an HMAC only this TPM can make over the creation data's hash and the new object's name.
TPM2_CertifyCreation checks the ticket and signs, with the AK itself, a TPMS_ATTEST saying "the object named
N was created by this TPM with creation data of hash H". The verifier checks that signature, that N is the
AK's name and H the hash of the creation data it was sent, and reads the identity digest and the parent's
name out of that creation data. So:

- the AK was created for exactly one identity key, at birth: it cannot be re-pointed at another one, and a
  copy of the identity key elsewhere has no AK (credential activation proves the AK lives in the TPM whose
  EK the manufacturer certified);
- the parent is a storage key of the same TPM: its name (a hash of its public area, fixedTPM, restricted
  decrypt) is in the creation data, and no object with fixedTPM set can be imported or loaded from outside
  (Part 3, 12.3 and 13.3), so data keys sealed to that parent open only inside this TPM.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from strongroom.attest import _doc
from strongroom.attest.errors import IdentityBindingError, KeyAttributesError, TpmFormatError
from strongroom.attest.tpm2 import (
    ALG_AES,
    ALG_CFB,
    ALG_ECC,
    ALG_RSA,
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_ST_ATTEST_CREATION,
    CreationData,
    CreationInfo,
    TpmPublic,
    check_ak,
    hash_name,
    parse_attest,
    parse_creation_data,
    parse_public,
    verify_attest_signature,
)

IDENTITY_CONTEXT = b"strongroom.attest.identity.v1\x00"
STORAGE_REQUIRED = RESTRICTED | DECRYPT | FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN


def identity_digest(identity_public_pem: bytes) -> bytes:
    """SHA-256("strongroom.attest.identity.v1" || 0x00 || DER SubjectPublicKeyInfo) of the host identity key
    (Ed25519, or ECDSA): the AK's outsideInfo."""
    try:
        key = serialization.load_pem_public_key(identity_public_pem)
    except (ValueError, TypeError) as exc:
        raise IdentityBindingError(f"host identity key is not a PEM public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise IdentityBindingError("host identity key must be Ed25519 or ECDSA")
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(IDENTITY_CONTEXT + spki).digest()


def check_storage_key(public: TpmPublic) -> None:
    """Refuse a parent that is not a TPM storage key: ECC or RSA, restricted decryption, fixedTPM,
    fixedParent, sensitiveDataOrigin, not a signing key, AES in CFB mode as its symmetric algorithm (Part 1,
    25.1 "Storage keys"; Part 3, 13.3: TPM2_Import needs a CFB parent)."""
    if public.type not in (ALG_ECC, ALG_RSA):
        raise KeyAttributesError("storage key is neither ECC nor RSA")
    if not public.has(STORAGE_REQUIRED) or public.attributes & SIGN_ENCRYPT:
        raise KeyAttributesError(
            f"storage key attributes 0x{public.attributes:08x} are not a restricted decryption key"
        )
    if (public.symmetric.algorithm, public.symmetric.mode) != (ALG_AES, ALG_CFB):
        raise KeyAttributesError("storage key's symmetric algorithm is not AES-CFB")


@dataclass(frozen=True)
class AkPublic:
    """An AK with proof of its birth: its TPMT_PUBLIC, its parent's TPMT_PUBLIC (the host's storage root
    key, SRK), the TPMS_CREATION_DATA the TPM produced, and TPM2_CertifyCreation's TPMS_ATTEST and
    TPMT_SIGNATURE by the AK over it."""

    public: bytes
    parent_public: bytes
    creation_data: bytes
    creation_attest: bytes
    creation_signature: bytes

    @property
    def name(self) -> bytes:
        return parse_public(self.public).name

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "public": _doc.b64(self.public),
            "parent_public": _doc.b64(self.parent_public),
            "creation_data": _doc.b64(self.creation_data),
            "creation_attest": _doc.b64(self.creation_attest),
            "creation_signature": _doc.b64(self.creation_signature),
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> AkPublic:
        names = ("public", "parent_public", "creation_data", "creation_attest", "creation_signature")
        doc = _doc.document(raw, "AK public", set(names))
        return cls(*(_doc.unb64(doc[n], "AK public", n) for n in names))


@dataclass(frozen=True)
class BoundAk:
    """A verified AK: its public area, its storage parent's public area and the identity digest it was made
    for."""

    ak: TpmPublic
    storage_key: TpmPublic
    identity_digest: bytes
    creation: CreationData


def verify_ak_binding(ak: AkPublic, identity_public_pem: bytes) -> BoundAk:
    """Check ``ak``'s birth certificate (see the module docstring) against the host identity key.

    Raises ``KeyAttributesError`` (not an AK, parent not a storage key), ``QuoteSignatureError``,
    ``TpmFormatError`` and ``IdentityBindingError`` (created for another identity key, or the creation data
    is not what the TPM certified)."""
    public = parse_public(ak.public)
    check_ak(public)
    verify_attest_signature(public, ak.creation_attest, ak.creation_signature)
    attest = parse_attest(ak.creation_attest)
    if attest.type != TPM_ST_ATTEST_CREATION or not isinstance(attest.attested, CreationInfo):
        raise TpmFormatError("AK birth certificate is not a TPM2_CertifyCreation attestation")
    info = attest.attested
    digest = identity_digest(identity_public_pem)
    if not hmac.compare_digest(info.object_name, public.name):
        raise IdentityBindingError("certified creation is of another object than this AK")
    creation_hash = hashlib.new(hash_name(public.name_alg), ak.creation_data).digest()
    if not hmac.compare_digest(info.creation_hash, creation_hash):
        raise IdentityBindingError("creation data is not the one the TPM certified")
    creation = parse_creation_data(ak.creation_data)
    if not hmac.compare_digest(creation.outside_info, digest):
        raise IdentityBindingError("the AK was created for another host identity key")
    parent = parse_public(ak.parent_public)
    # Defence in depth: the TPM itself only creates a fixedTPM AK under a restricted-decryption, fixedTPM
    # parent (Part 1, 27.2), and the parent's name below pins this public area to that parent.
    check_storage_key(parent)
    if not hmac.compare_digest(creation.parent_name, parent.name):
        raise IdentityBindingError("the AK was not created under the storage key presented with it")
    return BoundAk(public, parent, digest, creation)
