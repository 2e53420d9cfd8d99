"""HPKE (RFC 9180) base mode for sending a data key to one X25519 recipient: a host or a custodian.

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (KEM 0x0020, KDF 0x0001, AEAD 0x0002), from
``cryptography``'s ``hazmat.primitives.hpke`` single-shot API. A message is ``enc (32 bytes) || ciphertext``;
the ``info`` string is bound into the key schedule, so a message opens only under the same info (use it for
the release id, key id and purpose). This module adds no cryptography of its own: it fixes the suite, keeps
results in wipeable bytearrays and turns failures into typed errors. X25519 key encodings live here too,
so hosts, custodians and the custody service all read keys the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom.atomic import write_atomic
from strongroom.keys.errors import HpkeError, KeyProviderError

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
SUITE_NAME = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM"
ENC_BYTES = 32
TAG_BYTES = 16
MAX_MESSAGE_BYTES = 1 << 16


def seal_to_host(host_public: X25519PublicKey, data_key: bytes | bytearray, info: bytes) -> bytes:
    """Encrypt ``data_key`` (or any short secret) to one X25519 public key; returns ``enc || ciphertext``."""
    if not isinstance(host_public, X25519PublicKey):
        raise KeyProviderError("HPKE recipient must be an X25519 public key")
    if len(data_key) > MAX_MESSAGE_BYTES:
        raise KeyProviderError(f"HPKE plaintext of {len(data_key)} bytes is too long for key transport")
    return SUITE.encrypt(bytes(data_key), host_public, info=bytes(info))


def open_as_host(host_private: X25519PrivateKey, message: bytes, info: bytes) -> bytearray:
    """Decrypt a message from ``seal_to_host`` with the recipient's private key and the very same info."""
    if not isinstance(host_private, X25519PrivateKey):
        raise KeyProviderError("HPKE recipient key must be an X25519 private key")
    if len(message) < ENC_BYTES + TAG_BYTES or len(message) > MAX_MESSAGE_BYTES + ENC_BYTES + TAG_BYTES:
        raise HpkeError(f"HPKE message has an impossible length ({len(message)} bytes)")
    try:
        return bytearray(SUITE.decrypt(bytes(message), host_private, info=bytes(info)))
    except InvalidTag:
        raise HpkeError(
            "HPKE message does not open: wrong recipient key, different context (info), or tampered ciphertext"
        ) from None


# -- X25519 key encodings -------------------------------------------------------------------------


def public_bytes(key: X25519PublicKey) -> bytes:
    """The 32-byte raw encoding of an X25519 public key (RFC 7748)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_from_bytes(raw: bytes) -> X25519PublicKey:
    """Parse a 32-byte raw X25519 public key."""
    if len(raw) != 32:
        raise KeyProviderError(f"an X25519 public key is 32 bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def usable_recipient(raw: bytes) -> X25519PublicKey:
    """An X25519 public key HPKE can seal to: not of small order (RFC 7748 section 6.1 and RFC 9180
    section 7.1.4: a small-order point gives an all-zero shared secret, and encapsulation fails)."""
    public = public_from_bytes(raw)
    try:
        X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise HpkeError("the X25519 public key is of small order: nothing can be sealed to it") from None
    return public


def public_from_hex(text: str) -> X25519PublicKey:
    """Parse a raw X25519 public key written as 64 hex digits."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyProviderError(f"X25519 public key {text[:16]!r}... is not hexadecimal") from None
    return public_from_bytes(raw)


def fingerprint(key: X25519PublicKey) -> str:
    """A short stable name for a public key: ``x25519:`` + the first 16 bytes of SHA-256(raw), in hex."""
    return "x25519:" + hashlib.sha256(public_bytes(key)).hexdigest()[:32]


def write_private_key(path: Path, key: X25519PrivateKey, passphrase: bytes | None = None) -> None:
    """Write a private key as PKCS#8 PEM (encrypted when a passphrase is given), atomically, mode 0600."""
    if passphrase:
        from strongroom.keys.passphrase import check_passphrase

        check_passphrase(passphrase.decode("utf-8", "replace"), "the key's passphrase")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_atomic(Path(path), pem, mode=0o600)


def write_public_key(path: Path, key: X25519PublicKey) -> None:
    """Write a public key as SubjectPublicKeyInfo PEM, atomically."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomic(Path(path), pem, mode=0o644)


def load_private_key(path: Path, passphrase: bytes | None = None) -> X25519PrivateKey:
    """Read an X25519 private key from a PKCS#8 PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyProviderError(f"{path}: cannot read private key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyProviderError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyProviderError(f"{path}: expected an X25519 private key, found {type(key).__name__}")
    return key


def load_public_key(path: Path) -> X25519PublicKey:
    """Read an X25519 public key from a PEM file, or from a file holding 64 hex digits."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyProviderError(f"{path}: cannot read public key: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        return public_from_hex(data.decode("ascii", "replace").strip())
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyProviderError(f"{path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, X25519PublicKey):
        raise KeyProviderError(f"{path}: expected an X25519 public key, found {type(key).__name__}")
    return key
