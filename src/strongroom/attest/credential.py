"""Credential activation: proof that an attestation key lives in the TPM whose EK was certified
(TPM 2.0 Library Part 1, 24 "Credential Protection"; Part 3, 12.6 TPM2_MakeCredential and 12.5
TPM2_ActivateCredential).

The verifier picks a random secret and encrypts it to the EK for the AK's name (``make_challenge``: a seed
encrypted to the EK, from which an AES key and an HMAC key are derived with KDFa; the HMAC covers the AK's
name). Only a TPM holding the EK's private key can recover the seed, and it releases the secret only if an
object with exactly that name is loaded in it: the AK. The host returns what ActivateCredential gave it, and
``check_activation`` compares that to the secret in constant time.

``make_challenge`` uses ``tpm2_pytss.utils.make_credential`` (software, no TPM) and needs the ``attest``
extra; ``check_activation`` is pure.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from strongroom.attest import _doc, _tss
from strongroom.attest.errors import ActivationError, KeyAttributesError, TpmFormatError
from strongroom.attest.tpm2 import ALG_SHA256, DECRYPT, RESTRICTED, Reader, TpmPublic, digest_size, parse_public

SECRET_SIZE = 32


@dataclass(frozen=True)
class Challenge:
    """TPM2_MakeCredential's output: ``credential_blob`` (TPM2B_ID_OBJECT) and ``encrypted_secret``
    (TPM2B_ENCRYPTED_SECRET), both marshalled."""

    credential_blob: bytes
    encrypted_secret: bytes

    def __post_init__(self) -> None:
        for what, data in (("credential blob", self.credential_blob), ("encrypted secret", self.encrypted_secret)):
            reader = Reader(data)
            reader.tpm2b(1024, what)
            reader.done(what)

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "credential_blob": _doc.b64(self.credential_blob),
            "encrypted_secret": _doc.b64(self.encrypted_secret),
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> Challenge:
        doc = _doc.document(raw, "challenge", {"credential_blob", "encrypted_secret"})
        return cls(
            _doc.unb64(doc["credential_blob"], "challenge", "credential_blob"),
            _doc.unb64(doc["encrypted_secret"], "challenge", "encrypted_secret"),
        )


def make_challenge(ek_public: TpmPublic | bytes, ak_name: bytes) -> tuple[Challenge, bytes]:
    """Encrypt a fresh 32-byte secret to ``ek_public`` (TPMT_PUBLIC, a restricted decryption key) for the
    object named ``ak_name``; return the challenge for the host and the secret to keep."""
    ek = ek_public if isinstance(ek_public, TpmPublic) else parse_public(ek_public)
    if not ek.has(RESTRICTED | DECRYPT):
        raise KeyAttributesError("credentials are only encrypted to a restricted decryption key (an EK)")
    if len(ak_name) != 2 + digest_size(ALG_SHA256) or ak_name[:2] != ALG_SHA256.to_bytes(2, "big"):
        raise TpmFormatError("AK name must be a SHA-256 name (34 bytes)")
    tss = _tss.tss()
    utils = _tss.utils()
    public, _ = tss.TPMT_PUBLIC.unmarshal(ek.raw)
    secret = secrets.token_bytes(SECRET_SIZE)
    try:
        blob, encrypted = utils.make_credential(public, secret, tss.TPM2B_NAME(ak_name))
    except (ValueError, TypeError) as exc:
        raise KeyAttributesError(f"cannot encrypt a credential to this EK: {exc}") from None
    return Challenge(bytes(blob.marshal()), bytes(encrypted.marshal())), secret


def check_activation(secret: bytes, answer: bytes) -> None:
    """Accept only the challenge's own secret; ``ActivationError`` otherwise."""
    if not isinstance(answer, bytes) or not hmac.compare_digest(secret, answer):
        raise ActivationError(
            "credential activation answer is not the challenge's secret: the AK is not in the EK's TPM"
        )
