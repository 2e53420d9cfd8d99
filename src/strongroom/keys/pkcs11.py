"""PKCS#11 provider: data keys encrypted inside a token by a non-extractable AES-256 KEK, bound to a model.

The KEK is generated in the token (``create_kek``) with CKA_SENSITIVE=true and CKA_EXTRACTABLE=false, so
its value never leaves the hardware; opening the provider refuses a KEK whose attributes say otherwise.

Each data key is encrypted with CKM_AES_GCM (PKCS#11 v3.0 section 2.12.3; NIST SP 800-38D) under the KEK
with C_Encrypt, a random 96-bit IV and the associated data
``"strongroom/pkcs11-aes-gcm/v1" || 0x00 || key_id || 0x00 || binding.aad()`` (RFC 5116 AD), and decrypted
with C_Decrypt, which checks the tag inside the token: a key reference whose binding (seal id, model id)
was edited never decrypts. AES key wrap (CKM_AES_KEY_WRAP[_PAD], RFC 3394/5649) has no associated data and
so cannot bind; and SoftHSM2 2.6.1 refuses C_WrapKey with CKM_AES_GCM (CKR_MECHANISM_INVALID), so the data
key is passed to C_Encrypt as data rather than as a token object. The KEK may encrypt and decrypt but not
wrap or unwrap: a key allowed both would let a token user export other sensitive keys in the clear by
wrapping them and decrypting the result (Clulow's wrap/decrypt attack).

Blob: one mechanism byte (3 = AES_GCM) || IV (12) || ciphertext (32) || tag (16). Tags 1 and 2 (AES key
wrap, padded and not, used before keys were bound) are refused. Key id: ``<token label>/<key label>``.
Works with any PKCS#11 module that offers CKM_AES_GCM, by configuration (module path, token label, PIN,
key label); tested on SoftHSM2. The PIN is used to log in and not kept or logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from strongroom.keys.errors import (
    KekNotFoundError,
    KekPolicyError,
    KeyProviderError,
    ProviderAuthError,
    ProviderUnavailableError,
    UnwrapError,
)
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, WrappedKey, associated_data, check_reference
from strongroom.memory import wipe

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_MECHANISM = "AES_GCM"
MECHANISMS: dict[str, tuple[int, Mechanism]] = {"AES_GCM": (3, Mechanism.AES_GCM)}
_BY_TAG = {tag: (name, mech) for name, (tag, mech) in MECHANISMS.items()}
_RETIRED_TAGS = {1: "AES_KEY_WRAP_PAD", 2: "AES_KEY_WRAP"}
GCM_DOMAIN = b"strongroom/pkcs11-aes-gcm/v1\x00"
IV_BYTES = 12
TAG_BYTES = 16
BLOB_BYTES = 1 + IV_BYTES + DATA_KEY_BYTES + TAG_BYTES
KEK_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


def _load_module(module: str) -> Any:
    if not os.path.isfile(module):
        raise ProviderUnavailableError(f"PKCS#11 module {module} not found")
    try:
        return pkcs11.lib(module)
    except p11.PKCS11Error as exc:
        raise ProviderUnavailableError(f"PKCS#11 module {module} cannot be loaded: {exc}") from None


def _login(module: str, token_label: str, pin: str) -> Any:
    lib = _load_module(module)
    try:
        token = lib.get_token(token_label=token_label)
    except p11.NoSuchToken:
        raise ProviderUnavailableError(f"PKCS#11 module {module}: no token labelled {token_label!r}") from None
    except p11.MultipleTokensReturned:
        raise ProviderUnavailableError(f"PKCS#11 module {module}: several tokens labelled {token_label!r}") from None
    try:
        return token.open(user_pin=pin, rw=True)
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise ProviderAuthError(f"PKCS#11 token {token_label!r}: the PIN was refused") from None
    except p11.PinLocked:
        raise ProviderAuthError(f"PKCS#11 token {token_label!r}: the user PIN is locked") from None
    except p11.PKCS11Error as exc:
        raise ProviderUnavailableError(f"PKCS#11 token {token_label!r}: cannot open a session ({exc!r})") from None


_PIN_KEY = secrets.token_bytes(32)


def _pin_digest(pin: str) -> bytes:
    return hmac.new(_PIN_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


@dataclass
class _TokenLogin:
    """One logged-in session per (module, token) in this process: PKCS#11 login state is per application,
    so a second C_Login fails and any C_Logout logs every session out. Providers share it, refcounted."""

    key: tuple[str, str]
    session: Any
    pin_digest: bytes
    lock: threading.Lock = field(default_factory=threading.Lock)
    refs: int = 0


_LOGINS: dict[tuple[str, str], _TokenLogin] = {}
_LOGINS_LOCK = threading.Lock()


def _acquire(module: str, token_label: str, pin: str) -> _TokenLogin:
    key = (os.path.realpath(module), token_label)
    with _LOGINS_LOCK:
        login = _LOGINS.get(key)
        if login is None:
            login = _TokenLogin(key, _login(module, token_label, pin), _pin_digest(pin))
            _LOGINS[key] = login
        elif not hmac.compare_digest(login.pin_digest, _pin_digest(pin)):
            # The token is already logged in here, so C_Login cannot judge this PIN: compare with the one used.
            raise ProviderAuthError(f"PKCS#11 token {token_label!r}: the PIN was refused")
        login.refs += 1
        return login


def _release(login: _TokenLogin) -> None:
    with _LOGINS_LOCK:
        login.refs -= 1
        if login.refs == 0:
            del _LOGINS[login.key]
            with login.lock, contextlib.suppress(p11.PKCS11Error):
                login.session.close()


def _find_kek(session: Any, token_label: str, key_label: str) -> Any | None:
    found = list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.LABEL: key_label}
        )
    )
    if len(found) > 1:
        raise KekNotFoundError(f"PKCS#11 token {token_label!r}: {len(found)} AES keys are labelled {key_label!r}")
    return found[0] if found else None


def create_kek(module: str, token_label: str, pin: str, key_label: str) -> None:
    """Generate a fresh AES-256 KEK inside the token: sensitive, non-extractable, encrypt/decrypt only."""
    login = _acquire(module, token_label, pin)
    try:
        with login.lock:
            if _find_kek(login.session, token_label, key_label) is not None:
                raise KeyProviderError(f"PKCS#11 token {token_label!r}: a key labelled {key_label!r} already exists")
            template = dict(KEK_TEMPLATE)
            template[Attribute.ID] = os.urandom(8)
            try:
                login.session.generate_key(KeyType.AES, 256, label=key_label, store=True, template=template)
            except p11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 token {token_label!r}: cannot generate KEK {key_label!r} ({exc!r})"
                ) from None
    finally:
        _release(login)


def destroy_kek(module: str, token_label: str, pin: str, key_label: str) -> None:
    """Destroy the AES KEK labelled ``key_label`` inside the token (C_DestroyObject): every data key wrapped
    under it stops unwrapping, for good. Used to retire a compromised model key after a re-seal."""
    login = _acquire(module, token_label, pin)
    try:
        with login.lock:
            kek = _find_kek(login.session, token_label, key_label)
            if kek is None:
                raise KekNotFoundError(f"PKCS#11 token {token_label!r} holds no AES key labelled {key_label!r}")
            try:
                kek.destroy()
            except p11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 token {token_label!r}: cannot destroy KEK {key_label!r} ({exc!r})"
                ) from None
            if _find_kek(login.session, token_label, key_label) is not None:
                raise KeyProviderError(f"PKCS#11 token {token_label!r}: KEK {key_label!r} still present after destroy")
    finally:
        _release(login)


class Pkcs11Provider:
    """Key provider backed by an AES KEK inside a PKCS#11 token; operations on the token are serialised."""

    def __init__(
        self,
        module: str,
        token_label: str,
        pin: str,
        key_label: str,
        *,
        mechanism: str = DEFAULT_MECHANISM,
        create_key: bool = False,
    ) -> None:
        if mechanism not in MECHANISMS:
            raise KeyProviderError(
                f"PKCS#11 mechanism {mechanism!r} unsupported; use one of {sorted(MECHANISMS)} "
                "(AES key wrap has no associated data, so it cannot bind a data key to its model)"
            )
        self._token_label = token_label
        self._key_label = key_label
        self._tag, self._mechanism = MECHANISMS[mechanism]
        self._login: _TokenLogin | None = _acquire(module, token_label, pin)
        try:
            with self._login.lock:
                kek = _find_kek(self._login.session, token_label, key_label)
            if kek is None and create_key:
                create_kek(module, token_label, pin, key_label)
                with self._login.lock:
                    kek = _find_kek(self._login.session, token_label, key_label)
            if kek is None:
                raise KekNotFoundError(f"PKCS#11 token {token_label!r} holds no AES key labelled {key_label!r}")
            with self._login.lock:
                self._check_policy(kek)
            self._kek: Any = kek
        except BaseException:
            _release(self._login)
            self._login = None
            raise

    def _check_policy(self, kek: Any) -> None:
        where = f"PKCS#11 KEK {self.key_id}"
        if kek[Attribute.VALUE_LEN] != 32:
            raise KekPolicyError(f"{where} is not AES-256")
        if not kek[Attribute.SENSITIVE] or kek[Attribute.EXTRACTABLE]:
            raise KekPolicyError(f"{where} is extractable or not sensitive: refused (its value could leave the token)")
        if not (kek[Attribute.ENCRYPT] and kek[Attribute.DECRYPT]):
            raise KekPolicyError(
                f"{where} may not encrypt and decrypt (CKA_ENCRYPT/CKA_DECRYPT), which CKM_AES_GCM needs to bind "
                "each data key to its model; a KEK made for AES key wrap only cannot be used: create a new one "
                "with 'strongroom keys pkcs11-init'"
            )
        if kek[Attribute.WRAP] or kek[Attribute.UNWRAP]:
            raise KekPolicyError(
                f"{where} may also wrap or unwrap keys (CKA_WRAP/CKA_UNWRAP): refused, since a key that both wraps "
                "and decrypts lets a token user export other sensitive keys in the clear"
            )

    @property
    def provider(self) -> str:
        return "pkcs11"

    @property
    def key_id(self) -> str:
        return f"{self._token_label}/{self._key_label}"

    def _live(self) -> _TokenLogin:
        if self._login is None:
            raise KeyProviderError(f"PKCS#11 provider {self.key_id} is closed")
        return self._login

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        """A data key from the token's RNG XOR the OS RNG (neither source alone decides it), encrypted."""
        login = self._live()
        with login.lock:
            try:
                token_random = login.session.generate_random(DATA_KEY_BYTES * 8)
            except p11.PKCS11Error as exc:
                raise ProviderUnavailableError(
                    f"PKCS#11 token {self._token_label!r}: C_GenerateRandom failed ({exc!r})"
                ) from None
        dek = bytearray(os.urandom(DATA_KEY_BYTES))
        for i, b in enumerate(token_random):
            dek[i] ^= b
        try:
            return dek, self.wrap(dek, binding)
        except BaseException:
            wipe(dek)
            raise

    def _params(self, iv: bytes, binding: KeyBinding) -> GCMParams:
        """CK_GCM_PARAMS: 96-bit IV, AD = domain || key id || binding, 128-bit tag (PKCS#11 v3.0 2.12.3)."""
        return GCMParams(iv, associated_data(GCM_DOMAIN, self.key_id, binding), TAG_BYTES * 8)

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        """C_Encrypt the data key under the KEK with CKM_AES_GCM, authenticating ``binding`` in the token."""
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"data keys are {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        iv = os.urandom(IV_BYTES)  # random 96-bit IVs: one per data key, far below SP 800-38D's 2^32 limit
        params = self._params(iv, binding)
        login = self._live()
        with login.lock:
            try:
                sealed = self._kek.encrypt(bytes(data_key), mechanism=self._mechanism, mechanism_param=params)
            except p11.PKCS11Error as exc:
                raise KeyProviderError(f"PKCS#11 KEK {self.key_id}: encrypt failed ({exc!r})") from None
        if len(sealed) != DATA_KEY_BYTES + TAG_BYTES:
            raise KeyProviderError(f"PKCS#11 KEK {self.key_id}: AES-GCM returned {len(sealed)} bytes")
        return WrappedKey(self.provider, self.key_id, bytes([self._tag]) + iv + bytes(sealed), binding)

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        """C_Decrypt with CKM_AES_GCM: the token checks the tag over the blob and the reference's binding."""
        check_reference(self, wrapped)
        blob = wrapped.blob
        if blob[:1] and blob[0] in _RETIRED_TAGS:
            raise UnwrapError(
                f"PKCS#11 blob under {self.key_id} uses {_RETIRED_TAGS[blob[0]]}, which binds no model id: refused"
            )
        if len(blob) < 1 or blob[0] not in _BY_TAG:
            raise UnwrapError(f"PKCS#11 blob under {self.key_id}: unknown mechanism tag")
        _, mechanism = _BY_TAG[blob[0]]
        if len(blob) != BLOB_BYTES:
            raise UnwrapError(f"PKCS#11 blob under {self.key_id} has the wrong length ({len(blob)} bytes)")
        params = self._params(bytes(blob[1 : 1 + IV_BYTES]), wrapped.binding)
        login = self._live()
        with login.lock:
            try:
                plain = self._kek.decrypt(bytes(blob[1 + IV_BYTES :]), mechanism=mechanism, mechanism_param=params)
            except p11.PKCS11Error:
                raise UnwrapError(
                    f"PKCS#11 KEK {self.key_id} refused the wrapped data key "
                    "(tampered, foreign, or bound to another seal id or model id)"
                ) from None
        dek = bytearray(plain)
        if len(dek) != DATA_KEY_BYTES:
            wipe(dek)
            raise UnwrapError(f"PKCS#11 KEK {self.key_id} decrypted a key of the wrong length")
        return dek

    def kek_attributes(self) -> dict[str, bool]:
        """The KEK's protection attributes as the token reports them (for audits and tests)."""
        login = self._live()
        names = (
            "SENSITIVE",
            "EXTRACTABLE",
            "ALWAYS_SENSITIVE",
            "NEVER_EXTRACTABLE",
            "ENCRYPT",
            "DECRYPT",
            "WRAP",
            "UNWRAP",
            "TOKEN",
        )
        with login.lock:
            return {name: bool(self._kek[getattr(Attribute, name)]) for name in names}

    def close(self) -> None:
        """Release this provider's hold on the token session (the last one out logs out)."""
        if self._login is not None:
            login, self._login = self._login, None
            _release(login)

    def __enter__(self) -> Pkcs11Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
