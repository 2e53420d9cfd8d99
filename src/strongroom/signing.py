"""Signing identities shared by every domain: PEM keys (ECDSA P-256 or Ed25519), sign and verify bytes.

A signer is named by its key id: the lowercase hex SHA-256 of its public key's DER SubjectPublicKeyInfo.
ECDSA signatures are DER-encoded over SHA-256 (P-256), SHA-384 (P-384) or SHA-512 (P-521), as Sigstore
bundles and ``model-signing`` use; Ed25519 signatures are the raw 64 bytes. P-384 and P-521 are accepted so
signatures made elsewhere (``model-signing`` test keys are P-384) verify; new keys default to P-256.

Whatever signs implements ``SigningKey`` (``sign``, ``key_id``, ``key_type``, ``verifier``): ``Signer`` holds
its private key in memory from a PEM file; ``strongroom.keys.pkcs11_signer.Pkcs11Signer`` keeps it inside a
PKCS#11 token. ``load_signer`` opens either from a reference: a file path, or a ``pkcs11:`` URI (RFC 7512).
Both make byte-identical kinds of signature (Ed25519, or low-S DER ECDSA), so verifiers cannot tell them apart.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

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


class KeyReferenceError(SigningKeyError):
    """A signing key reference (a ``pkcs11:`` URI) is malformed, or the settings it needs are incomplete."""


class TokenKeyError(SigningKeyError):
    """A signing key inside a PKCS#11 token could not be opened or used."""


class TokenUnavailableError(TokenKeyError):
    """The PKCS#11 module cannot be loaded, or the token is absent or ambiguous: nothing was signed."""


class TokenAuthError(TokenKeyError):
    """The token refused the PIN (wrong, locked), or no PIN was configured."""


class TokenKeyNotFoundError(TokenKeyError):
    """The token holds no private key matching the reference (or several), or no public key beside it."""


class TokenKeyPolicyError(TokenKeyError):
    """The token key exists but is unfit to sign: extractable, not sensitive, not allowed to sign, or of a
    type Strongroom does not verify."""


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


def low_s_der(r: int, s: int, curve_name: str) -> bytes:
    """DER ECDSA signature (r, s) with s moved into the lower half of the group, the one form verifiers take."""
    order = _ORDERS[curve_name]
    return encode_dss_signature(r, order - s if s > order // 2 else s)


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


class SigningKey(Protocol):
    """Anything that signs for a person, officer, custodian, host or service: a PEM file's key (``Signer``) or a
    key inside a PKCS#11 token (``Pkcs11Signer``). ``sign`` returns what ``verifier.verify`` accepts and
    ``verifier.check_unique`` passes: raw Ed25519, or DER low-S ECDSA."""

    @property
    def key_id(self) -> str: ...

    @property
    def key_type(self) -> KeyType: ...

    @property
    def verifier(self) -> Verifier: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Signer:
    """A private key that signs, held in this process's memory (loaded from a PEM file or generated)."""

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
        return low_s_der(r, s, self.private.curve.name)

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


PKCS11_SCHEME = "pkcs11:"


def is_token_reference(ref: str | Path) -> bool:
    """Whether ``ref`` names a key in a token (a ``pkcs11:`` URI) rather than a PEM file."""
    return str(ref)[: len(PKCS11_SCHEME)].lower() == PKCS11_SCHEME


def load_signer(ref: str | Path, *, env: Mapping[str, str] | None = None, config: Path | None = None) -> SigningKey:
    """The signing key ``ref`` names: a PEM private key file, or a key in a PKCS#11 token named by a URI such as
    ``pkcs11:token=strongroom;object=alice`` (RFC 7512). For a token, the module and PIN come from the URI
    (``?module-path=...&pin-source=file:...``), else from ``STRONGROOM_PKCS11_MODULE`` and
    ``STRONGROOM_PKCS11_PIN`` in ``env`` (default: the process environment), else from the key settings file
    ``config`` (default ``$STRONGROOM_KEY_CONFIG``, section ``[pkcs11]``). Raises ``SigningKeyError`` (or a
    subclass) with a one-line reason."""
    if is_token_reference(ref):
        from strongroom.keys.pkcs11_signer import open_token_signer

        return open_token_signer(str(ref), env=env, config=config)
    return Signer.load(Path(ref))
