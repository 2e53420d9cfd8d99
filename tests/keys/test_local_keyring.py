"""The local development keyring: passphrase and KEK-file protection, wrap/unwrap, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strongroom.keys import (
    KeyProvider,
    KeyProviderError,
    KeyringFormatError,
    KeyringNotFoundError,
    LocalKeyring,
    UnwrapError,
    WrappedKey,
    WrongPassphraseError,
)
from strongroom.keys.local import WRAP_AAD

from .conftest import bind

STRONG = "granite orchid lantern thimble"


def test_passphrase_keyring_round_trip(tmp_path: Path) -> None:
    ring = LocalKeyring.init(tmp_path / "k", passphrase=STRONG, scrypt_n=2**10)
    assert isinstance(ring, KeyProvider)
    dek, wrapped = ring.generate_data_key(bind())
    reopened = LocalKeyring.open(tmp_path / "k", passphrase=STRONG)
    assert reopened.key_id == ring.key_id
    assert reopened.unwrap(wrapped) == dek
    assert WrappedKey.from_json(json.loads(json.dumps(wrapped.to_json()))) == wrapped
    assert (tmp_path / "k" / "keyring.json").stat().st_mode & 0o077 == 0


def test_wrong_passphrase(tmp_path: Path) -> None:
    LocalKeyring.init(tmp_path / "k", passphrase=STRONG, scrypt_n=2**10)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        LocalKeyring.open(tmp_path / "k", passphrase="pW")
    with pytest.raises(KeyProviderError, match="needs a passphrase"):
        LocalKeyring.open(tmp_path / "k")


def test_kek_file_keyring(tmp_path: Path) -> None:
    kek = tmp_path / "kek.hex"
    kek.write_text("ab" * 32 + "\n")
    ring = LocalKeyring.init(tmp_path / "k", kek_file=kek)
    _, wrapped = ring.generate_data_key(bind())
    assert LocalKeyring.open(tmp_path / "k", kek_file=kek).unwrap(wrapped)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x01" * 32)
    with pytest.raises(WrongPassphraseError, match="KEK file does not match"):
        LocalKeyring.open(tmp_path / "k", kek_file=other)
    bad = tmp_path / "bad"
    bad.write_text("short")
    with pytest.raises(KeyProviderError, match="32 raw bytes or 64 hex"):
        LocalKeyring.open(tmp_path / "k", kek_file=bad)


def test_tampered_and_foreign_wrapped_keys(tmp_path: Path) -> None:
    ring = LocalKeyring.init(tmp_path / "k", passphrase=STRONG, scrypt_n=2**10)
    _, wrapped = ring.generate_data_key(bind())
    flipped = WrappedKey(
        wrapped.provider, wrapped.key_id, wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]), wrapped.binding
    )
    with pytest.raises(UnwrapError, match="failed authentication"):
        ring.unwrap(flipped)
    with pytest.raises(UnwrapError, match="wrong length"):
        ring.unwrap(WrappedKey(wrapped.provider, wrapped.key_id, wrapped.blob[:20], wrapped.binding))
    with pytest.raises(UnwrapError, match="wrapped by pkcs11:"):
        ring.unwrap(WrappedKey("pkcs11", wrapped.key_id, wrapped.blob, wrapped.binding))


def test_missing_and_malformed_keyrings(tmp_path: Path) -> None:
    with pytest.raises(KeyringNotFoundError, match="key directory not found"):
        LocalKeyring.open(tmp_path / "nope", passphrase=STRONG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyringNotFoundError, match="no keyring.json"):
        LocalKeyring.open(tmp_path / "empty", passphrase=STRONG)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "keyring.json").write_text("{not json")
    with pytest.raises(KeyringFormatError, match="not valid JSON"):
        LocalKeyring.open(tmp_path / "bad", passphrase=STRONG)
    with pytest.raises(KeyProviderError, match="already exists"):
        LocalKeyring.init(tmp_path / "bad", passphrase=STRONG)


def test_closed_keyring_refuses_and_wipes(tmp_path: Path) -> None:
    ring = LocalKeyring.init(tmp_path / "k", passphrase=STRONG, scrypt_n=2**10)
    _, wrapped = ring.generate_data_key(bind())
    kek = ring._kek
    ring.close()
    assert kek == bytearray(32)
    with pytest.raises(KeyProviderError, match="closed"):
        ring.unwrap(wrapped)


def test_binding_is_the_documented_associated_data(tmp_path: Path) -> None:
    """An independent AES-GCM decrypt with the KEK and the AD docs/format.md gives opens the blob; any
    other binding in the AD does not (RFC 5116: the AD is authenticated, not encrypted)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kek = tmp_path / "kek.bin"
    kek.write_bytes(bytes(range(32)))
    ring = LocalKeyring.init(tmp_path / "k", kek_file=kek)
    binding = bind()
    dek, wrapped = ring.generate_data_key(binding)
    ad = WRAP_AAD + ring.key_id.encode() + b"\x00" + binding.aad()
    assert AESGCM(bytes(range(32))).decrypt(wrapped.blob[:12], wrapped.blob[12:], ad) == dek
    with pytest.raises(InvalidTag):
        AESGCM(bytes(range(32))).decrypt(wrapped.blob[:12], wrapped.blob[12:], WRAP_AAD + ring.key_id.encode())


@pytest.mark.parametrize(
    ("passphrase", "why"),
    [("", "too short"), ("pw", "too short"), ("Tr0ub4dor&3", "too short"), ("password1234", "too easy to guess"),
     ("qwertyuiopasdf", "too easy to guess"), ("aaaaaaaaaaaaaaaa", "too easy to guess"), ("custody2026!", "too easy")],
)  # fmt: skip
def test_a_guessable_passphrase_never_protects_a_keyring(tmp_path: Path, passphrase: str, why: str) -> None:
    from strongroom.keys.errors import WeakPassphraseError

    with pytest.raises(WeakPassphraseError, match=why):
        LocalKeyring.init(tmp_path / "k", passphrase=passphrase, scrypt_n=2**10)
    assert not (tmp_path / "k").exists()
