"""C2SP signed notes (signed-note) with Ed25519 signatures, and verifier keys in vkey form.

A signed note is ``text || "\\n" || lines`` where each line is ``"— " name " " base64(key_hash || sig)``.
The key hash is the first 4 bytes of SHA-256(name || "\\n" || type || public key); type 0x01 is an Ed25519
note signature over the text, type 0x04 a tlog-cosignature/v1 (see ``strongroom.ledger.cosignature``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from strongroom.ledger.errors import NoteError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014 "


def key_hash(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise NoteError(f"key name {name!r} must be non-empty printable text without spaces or '+'")
    return name


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """A named Ed25519 public key that checks one signature type."""

    name: str
    public: bytes
    sig_type: int = ED25519

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.sig_type, self.public)

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([self.sig_type]) + self.public).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError(f"vkey {vkey[:40]!r} must be name+hash+key")
        name, hash_hex, encoded = parts
        check_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
            expected = bytes.fromhex(hash_hex)
        except (binascii.Error, ValueError):
            raise NoteError(f"vkey for {name}: malformed hash or key encoding") from None
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"vkey for {name}: only Ed25519 (0x01) and cosignature/v1 (0x04) keys are supported")
        verifier = cls(name, raw[1:], raw[0])
        if verifier.key_hash != expected:
            raise NoteError(f"vkey for {name}: key hash does not match the key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """A named Ed25519 private key that signs notes (type 0x01) or cosignatures (type 0x04)."""

    name: str
    private: Ed25519PrivateKey
    sig_type: int = ED25519

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(check_name(self.name), raw_public(self.private.public_key()), self.sig_type)

    def signature_line(self, payload: bytes) -> str:
        """A note signature line carrying ``payload`` (the raw signature, or ts || sig for cosignatures)."""
        return f"{DASH}{self.name} {base64.b64encode(self.verifier.key_hash + payload).decode()}\n"

    def sign_note(self, text: str) -> str:
        check_text(text)
        return text + "\n" + self.signature_line(self.private.sign(text.encode()))


@dataclass(frozen=True)
class Signature:
    """One parsed signature line."""

    name: str
    key_hash: bytes
    payload: bytes


def check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any((ord(c) < 0x20 and c != "\n") or c == "\x7f" for c in text):
        raise NoteError("note text contains control characters")
    if "\n\n" in text:
        raise NoteError("note text must not contain a blank line")


def parse_note(note: str) -> tuple[str, list[Signature]]:
    """Split a signed note into its text and signature lines."""
    if len(note) > 1_000_000:
        raise NoteError("note is too large")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("signed note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    check_text(text)
    if not block.endswith("\n"):
        raise NoteError("signature block must end with a newline")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(DASH):
            raise NoteError(f"malformed signature line {line[:40]!r}")
        try:
            name, encoded = line[len(DASH) :].split(" ")
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError(f"malformed signature line {line[:40]!r}") from None
        if len(raw) < 5:
            raise NoteError(f"signature by {name} is too short")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("signed note has no signatures")
    return text, signatures


def open_note(note: str, verifier: NoteVerifier) -> tuple[str, list[Signature]]:
    """Return the note's text after checking ``verifier``'s Ed25519 note signature on it."""
    text, signatures = parse_note(note)
    for sig in signatures:
        if sig.name == verifier.name and sig.key_hash == verifier.key_hash:
            if verifier.verify(text.encode(), sig.payload):
                return text, signatures
            raise NoteError(f"signature by {verifier.name} on the note does not verify")
    raise NoteError(f"note is not signed by {verifier.name}")


def private_from_pem(data: bytes, source: str, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        state = "encrypted: give its passphrase" if passphrase is None else "not encrypted, but a passphrase was given"
        raise NoteError(f"{source}: the private key is {state}") from None
    except ValueError:
        raise NoteError(f"{source}: wrong passphrase, or not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NoteError(f"{source}: log and witness keys must be Ed25519")
    return key
