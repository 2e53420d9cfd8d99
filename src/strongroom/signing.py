"""Signing identities shared by every domain: PEM keys (ECDSA P-256 or Ed25519), sign and verify bytes.

A signer is named by its key id: the lowercase hex SHA-256 of its public key's DER SubjectPublicKeyInfo.
ECDSA signatures are DER-encoded over SHA-256 (P-256), SHA-384 (P-384) or SHA-512 (P-521), as Sigstore
bundles and ``model-signing`` use; Ed25519 signatures are the raw 64 bytes. P-384 and P-521 are accepted so
signatures made elsewhere (``model-signing`` test keys are P-384) verify; new keys default to P-256.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from strongroom.atomic import write_atomic
from strongroom.errors import StrongroomError

KeyType = Literal["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"]

_CURVES: dict[str, KeyType] = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SigningKeyError(StrongroomError):
    """A signing key file is missing, malformed or of an unsupported type."""


class BadSignatureError(StrongroomError):
    """A signature does not verify under the given public key."""


# Group orders n of the NIST curves (SEC 2 v2, sections 2.4.2, 2.5.1, 2.6.1), for the low-S rule.
_ORDERS = {
    "secp256r1": int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16),
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "secp521r1": int("01" + "F" * 64 + "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
}


def public_key_id(public: PublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def key_type_of(key: PrivateKey | PublicKey) -> KeyType:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    raise SigningKeyError(f"unsupported elliptic curve {key.curve.name} (use P-256, P-384, P-521 or Ed25519)")


def ecdsa_hash(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The digest paired with a curve, as Sigstore specifies: SHA-256, SHA-384 or SHA-512."""
    size = key.curve.key_size
    return hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()


@dataclass(frozen=True)
class Verifier:
    """A public key that checks signatures."""

    public: PublicKey

    @functools.cached_property
    def key_id(self) -> str:
        return public_key_id(self.public)

    @property
    def key_type(self) -> KeyType:
        return key_type_of(self.public)

    def pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise BadSignatureError unless ``signature`` is valid for ``message``."""
        try:
            if isinstance(self.public, ed25519.Ed25519PublicKey):
                self.public.verify(signature, message)
            else:
                self.public.verify(signature, message, ec.ECDSA(ecdsa_hash(self.public)))
        except InvalidSignature:
            raise BadSignatureError(f"signature does not verify under key {self.key_id[:16]}") from None

    def check_unique(self, signature: bytes) -> None:
        """Refuse ECDSA signatures another party could derive from a valid one (RFC 6979 s. 2.4 leaves s and
        n - s both valid): only DER-exact, low-S signatures are unique. Ed25519 signatures already are
        (RFC 8032 s. 5.1.7 requires S < L)."""
        if isinstance(self.public, ed25519.Ed25519PublicKey):
            return
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            raise BadSignatureError("ECDSA signature is not DER") from None
        if encode_dss_signature(r, s) != signature:
            raise BadSignatureError("ECDSA signature is not in its one DER form")
        if s > _ORDERS[self.public.curve.name] // 2:
            raise BadSignatureError("ECDSA signature is not low-S (malleable)")

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> Verifier:
        try:
            public = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise SigningKeyError(f"{source}: not a PEM public key") from None
        if not isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise SigningKeyError(f"{source}: unsupported public key type (use ECDSA P-256/P-384/P-521 or Ed25519)")
        key_type_of(public)
        return cls(public)

    @classmethod
    def load(cls, path: Path) -> Verifier:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"{path}: cannot read public key: {exc.strerror}") from None
        return cls.from_pem(data, str(path))


@dataclass(frozen=True)
class Signer:
    """A private key that signs."""

    private: PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.private.public_key())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    @property
    def key_type(self) -> KeyType:
        return key_type_of(self.private)

    def sign(self, message: bytes) -> bytes:
        """Ed25519, or DER ECDSA with s in the lower half of the group (low-S), so signatures are unique."""
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            return self.private.sign(message)
        r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(ecdsa_hash(self.private))))
        order = _ORDERS[self.private.curve.name]
        return encode_dss_signature(r, order - s if s > order // 2 else s)

    @classmethod
    def generate(cls, key_type: KeyType = "ecdsa-p256") -> Signer:
        if key_type == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        curves = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1(), "ecdsa-p521": ec.SECP521R1()}
        if key_type in curves:
            return cls(ec.generate_private_key(curves[key_type]))
        raise SigningKeyError(f"unknown key type {key_type!r} (ecdsa-p256, ecdsa-p384, ecdsa-p521 or ed25519)")

    def pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted under ``passphrase`` when one is given (the library's best available scheme)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    @classmethod
    def from_pem(cls, data: bytes, source: str = "private key", passphrase: bytes | None = None) -> Signer:
        try:
            private = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError:
            state = (
                "encrypted: give its passphrase" if passphrase is None else "not encrypted, but a passphrase was given"
            )
            raise SigningKeyError(f"{source}: the private key is {state}") from None
        except (ValueError, UnsupportedAlgorithm):
            why = "wrong passphrase, or not a PEM private key" if passphrase else "not an unencrypted PEM private key"
            raise SigningKeyError(f"{source}: {why}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: unsupported private key type (use ECDSA P-256/P-384/P-521 or Ed25519)")
        key_type_of(private)
        return cls(private)

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> Signer:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"{path}: cannot read private key: {exc.strerror}") from None
        return cls.from_pem(data, str(path), passphrase)

    def save(self, private_path: Path, public_path: Path, passphrase: bytes | None = None) -> None:
        """Write the private key (mode 0600; encrypted when a passphrase is given) and public key (0644)."""
        write_atomic(private_path, self.pem(passphrase), mode=0o600)
        write_atomic(public_path, self.verifier.pem(), mode=0o644)
