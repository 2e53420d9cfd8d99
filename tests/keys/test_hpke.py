"""HPKE key transport to hosts: round trips, binding to info and recipient, interop with pyhpke, key files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from strongroom.keys.errors import HpkeError, KeyProviderError
from strongroom.keys.hpke import (
    fingerprint,
    load_private_key,
    load_public_key,
    open_as_host,
    public_bytes,
    public_from_hex,
    seal_to_host,
    write_private_key,
    write_public_key,
)

PYHPKE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
KEY = bytes(range(32))


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def test_round_trip() -> None:
    host = X25519PrivateKey.generate()
    message = seal_to_host(host.public_key(), bytearray(KEY), b"release/1")
    assert len(message) == 32 + 32 + 16
    opened = open_as_host(host, message, b"release/1")
    assert isinstance(opened, bytearray) and opened == KEY


def test_fresh_encapsulation_each_time() -> None:
    host = X25519PrivateKey.generate()
    assert seal_to_host(host.public_key(), KEY, b"i") != seal_to_host(host.public_key(), KEY, b"i")


def test_bound_to_info_and_recipient() -> None:
    host, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    message = seal_to_host(host.public_key(), KEY, b"release/1")
    with pytest.raises(HpkeError):
        open_as_host(host, message, b"release/2")
    with pytest.raises(HpkeError):
        open_as_host(other, message, b"release/1")


@pytest.mark.parametrize("position", [0, 31, 32, 50, 79])
def test_tampering_detected(position: int) -> None:
    host = X25519PrivateKey.generate()
    message = bytearray(seal_to_host(host.public_key(), KEY, b"i"))
    message[position] ^= 1
    with pytest.raises(HpkeError):
        open_as_host(host, bytes(message), b"i")


@pytest.mark.parametrize("length", [0, 47, 79])
def test_truncation_detected(length: int) -> None:
    host = X25519PrivateKey.generate()
    message = seal_to_host(host.public_key(), KEY, b"i")
    with pytest.raises(HpkeError):
        open_as_host(host, message[:length], b"i")


def test_interop_with_pyhpke_both_ways() -> None:
    """An independent RFC 9180 implementation opens our messages and we open its: the suite is standard."""
    host = X25519PrivateKey.generate()
    message = seal_to_host(host.public_key(), KEY, b"strongroom/release")
    recipient = PYHPKE.create_recipient_context(
        message[:32], PYHPKE.kem.deserialize_private_key(_raw_private(host)), info=b"strongroom/release"
    )
    assert recipient.open(message[32:]) == KEY
    enc, sender = PYHPKE.create_sender_context(
        PYHPKE.kem.deserialize_public_key(public_bytes(host.public_key())), info=b"other info"
    )
    assert open_as_host(host, enc + sender.seal(KEY), b"other info") == KEY


def test_wrong_key_types_refused() -> None:
    with pytest.raises(KeyProviderError):
        seal_to_host(Ed25519PrivateKey.generate().public_key(), KEY, b"i")  # type: ignore[arg-type]
    with pytest.raises(KeyProviderError):
        open_as_host(Ed25519PrivateKey.generate(), b"x" * 80, b"i")  # type: ignore[arg-type]


def test_key_files(tmp_path: Path) -> None:
    key = X25519PrivateKey.generate()
    write_private_key(tmp_path / "host.pem", key, b"host key file passphrase")
    write_public_key(tmp_path / "host.pub.pem", key.public_key())
    assert (tmp_path / "host.pem").stat().st_mode & 0o777 == 0o600
    loaded = load_private_key(tmp_path / "host.pem", b"host key file passphrase")
    assert public_bytes(loaded.public_key()) == public_bytes(key.public_key())
    assert public_bytes(load_public_key(tmp_path / "host.pub.pem")) == public_bytes(key.public_key())
    (tmp_path / "host.hex").write_text(public_bytes(key.public_key()).hex() + "\n")
    assert fingerprint(load_public_key(tmp_path / "host.hex")) == fingerprint(key.public_key())
    with pytest.raises(KeyProviderError):
        load_private_key(tmp_path / "host.pem", b"wrong passphrase here")
    with pytest.raises(KeyProviderError, match="cannot read"):
        load_public_key(tmp_path / "absent.pem")


def test_wrong_kind_of_key_file(tmp_path: Path) -> None:
    ed = Ed25519PrivateKey.generate()
    pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ed.pem").write_bytes(pem)
    with pytest.raises(KeyProviderError, match="expected an X25519 private key"):
        load_private_key(tmp_path / "ed.pem")
    with pytest.raises(KeyProviderError):
        public_from_hex("zz" * 32)
    with pytest.raises(KeyProviderError):
        public_from_hex("00" * 31)
