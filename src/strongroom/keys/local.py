"""A local development key provider: a KEK in a key directory, protected by a passphrase or a KEK file.

Layout of ``KEYDIR/keyring.json`` (canonical JSON)::

    {"format": "strongroom-local-keyring/v1", "key_id": "local-<16 hex>",
     "protection": "scrypt" | "kek-file",
     "scrypt": {"salt": b64, "n": int, "r": int, "p": int},   # scrypt only
     "sealed_kek": b64(nonce || AES-256-GCM(passphrase key, KEK, aad=key_id)),  # scrypt only
     "kek_check": hex(HMAC-SHA256(KEK, "strongroom/local/kek-check"))}

Data keys are wrapped as nonce(12) || AES-256-GCM(KEK, DEK, aad) with
aad = "strongroom/local-wrap/v1" || 0x00 || key_id || 0x00 || binding.aad() (RFC 5116 associated data), so a
key reference whose binding (seal id, model id) was edited fails authentication.
This provider is for development and tests; production keys belong in an HSM or KMS.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from strongroom.atomic import write_atomic
from strongroom.canonical_json import canonical_json
from strongroom.keys.errors import (
    KeyProviderError,
    KeyringFormatError,
    KeyringNotFoundError,
    UnwrapError,
    WrongPassphraseError,
)
from strongroom.keys.passphrase import check_passphrase
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, WrappedKey, associated_data, check_reference
from strongroom.memory import lock, unlock, wipe

KEYRING_FILE = "keyring.json"
FORMAT = "strongroom-local-keyring/v1"
SCRYPT_N = 2**17
WRAP_AAD = b"strongroom/local-wrap/v1\x00"
CHECK_LABEL = b"strongroom/local/kek-check"
NONCE_BYTES = 12


def _kek_check(kek: bytes | bytearray) -> str:
    return hmac.new(bytes(kek), CHECK_LABEL, sha256).hexdigest()


def _scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytearray:
    kdf = Scrypt(salt=salt, length=32, n=n, r=r, p=p)
    return bytearray(kdf.derive(passphrase.encode("utf-8")))


def read_kek_file(path: Path) -> bytearray:
    """Read a KEK file: 32 raw bytes, or 64 hexadecimal characters (whitespace ignored)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise KeyProviderError(f"{path}: cannot read KEK file: {exc.strerror}") from None
    if len(raw) == DATA_KEY_BYTES:
        return bytearray(raw)
    text = raw.strip()
    if len(text) == 2 * DATA_KEY_BYTES:
        try:
            return bytearray(binascii.unhexlify(text))
        except binascii.Error:
            pass
    raise KeyProviderError(f"{path}: KEK file must hold 32 raw bytes or 64 hex characters")


class LocalKeyring:
    """Key provider backed by a key directory on local disk."""

    def __init__(self, key_id: str, kek: bytearray) -> None:
        self._key_id = key_id
        self._kek = kek
        lock(kek)  # out of swap where the memory-lock limit allows
        self._aead: AESGCM | None = AESGCM(bytes(kek))

    @property
    def provider(self) -> str:
        return "local"

    @property
    def key_id(self) -> str:
        return self._key_id

    # -- creation and opening -------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        keydir: Path,
        *,
        passphrase: str | None = None,
        kek_file: Path | None = None,
        scrypt_n: int = SCRYPT_N,
    ) -> LocalKeyring:
        """Create a new key directory with a fresh KEK; exactly one of passphrase or kek_file."""
        if (passphrase is None) == (kek_file is None):
            raise KeyProviderError("give exactly one of a passphrase or a KEK file")
        if passphrase is not None:
            check_passphrase(passphrase, "the keyring passphrase")
        keydir = Path(keydir)
        if (keydir / KEYRING_FILE).exists():
            raise KeyProviderError(f"{keydir}: a keyring already exists here")
        keydir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_id = "local-" + secrets.token_hex(8)
        record: dict[str, Any] = {"format": FORMAT, "key_id": key_id}
        if kek_file is not None:
            kek = read_kek_file(kek_file)
            record["protection"] = "kek-file"
        else:
            assert passphrase is not None
            kek = bytearray(secrets.token_bytes(DATA_KEY_BYTES))
            salt = secrets.token_bytes(16)
            pkey = _scrypt_key(passphrase, salt, scrypt_n, 8, 1)
            nonce = secrets.token_bytes(NONCE_BYTES)
            try:
                sealed = AESGCM(bytes(pkey)).encrypt(nonce, bytes(kek), key_id.encode())
            finally:
                wipe(pkey)
            record["protection"] = "scrypt"
            record["scrypt"] = {"salt": base64.b64encode(salt).decode(), "n": scrypt_n, "r": 8, "p": 1}
            record["sealed_kek"] = base64.b64encode(nonce + sealed).decode()
        record["kek_check"] = _kek_check(kek)
        write_atomic(keydir / KEYRING_FILE, canonical_json(record) + b"\n")
        return cls(key_id, kek)

    @classmethod
    def open(cls, keydir: Path, *, passphrase: str | None = None, kek_file: Path | None = None) -> LocalKeyring:
        """Open an existing key directory with its passphrase or KEK file."""
        record = cls.read_record(keydir)
        key_id = record["key_id"]
        if record["protection"] == "kek-file":
            if kek_file is None:
                raise KeyProviderError(f"{keydir}: this keyring is opened with a KEK file (--kek-file)")
            kek = read_kek_file(kek_file)
        else:
            if passphrase is None:
                raise KeyProviderError(f"{keydir}: this keyring needs a passphrase (set STRONGROOM_PASSPHRASE)")
            kek = cls._open_with_passphrase(keydir, record, passphrase)
        if not hmac.compare_digest(_kek_check(kek), record["kek_check"]):
            wipe(kek)
            raise WrongPassphraseError(f"{keydir}: the KEK file does not match this keyring")
        return cls(key_id, kek)

    @staticmethod
    def _open_with_passphrase(keydir: Path, record: dict[str, Any], passphrase: str) -> bytearray:
        params = record.get("scrypt")
        try:
            assert isinstance(params, dict)
            salt = base64.b64decode(params["salt"], validate=True)
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            blob = base64.b64decode(record["sealed_kek"], validate=True)
        except (AssertionError, KeyError, ValueError, TypeError, binascii.Error):
            raise KeyringFormatError(f"{keydir / KEYRING_FILE}: malformed scrypt parameters") from None
        pkey = _scrypt_key(passphrase, salt, n, r, p)
        try:
            kek = AESGCM(bytes(pkey)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], record["key_id"].encode())
        except InvalidTag:
            raise WrongPassphraseError(f"{keydir}: wrong passphrase for this keyring") from None
        finally:
            wipe(pkey)
        return bytearray(kek)

    @staticmethod
    def read_record(keydir: Path) -> dict[str, Any]:
        """Read and validate ``keyring.json`` without opening the KEK."""
        path = Path(keydir) / KEYRING_FILE
        if not Path(keydir).is_dir():
            raise KeyringNotFoundError(f"{keydir}: key directory not found (create it with 'strongroom keys init')")
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeyringNotFoundError(f"{keydir}: no {KEYRING_FILE} in this directory") from None
        except OSError as exc:
            raise KeyringNotFoundError(f"{path}: cannot read: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise KeyringFormatError(f"{path}: not valid JSON") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise KeyringFormatError(f"{path}: not a {FORMAT} keyring")
        for field in ("key_id", "protection", "kek_check"):
            if not isinstance(record.get(field), str):
                raise KeyringFormatError(f"{path}: field {field!r} missing or not a string")
        if record["protection"] not in ("scrypt", "kek-file"):
            raise KeyringFormatError(f"{path}: unknown protection {record['protection']!r}")
        return record

    # -- the provider protocol ----------------------------------------------------------------

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise KeyProviderError(f"keyring {self._key_id} is closed")
        return self._aead

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        dek = bytearray(os.urandom(DATA_KEY_BYTES))
        try:
            return dek, self.wrap(dek, binding)
        except BaseException:
            wipe(dek)
            raise

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"data keys are {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        aad = associated_data(WRAP_AAD, self._key_id, binding)
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = nonce + self._cipher().encrypt(nonce, bytes(data_key), aad)
        return WrappedKey(self.provider, self._key_id, blob, binding)

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        check_reference(self, wrapped)
        blob = wrapped.blob
        if len(blob) != NONCE_BYTES + DATA_KEY_BYTES + 16:
            raise UnwrapError(f"wrapped data key under {self._key_id} has the wrong length ({len(blob)} bytes)")
        aad = associated_data(WRAP_AAD, self._key_id, wrapped.binding)
        try:
            dek = self._cipher().decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise UnwrapError(
                f"wrapped data key failed authentication under {self._key_id} "
                "(tampered, or bound to another seal id or model id)"
            ) from None
        return bytearray(dek)

    def close(self) -> None:
        """Wipe the KEK from this object's memory."""
        wipe(self._kek)
        unlock(self._kek)
        self._aead = None

    def __enter__(self) -> LocalKeyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
