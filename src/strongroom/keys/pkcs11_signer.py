"""Signing keys that never leave a PKCS#11 token: SoftHSM2 in tests, a YubiKey (PIV), a smart card or an HSM.

A token key is named by a PKCS#11 URI (RFC 7512), e.g. ``pkcs11:token=strongroom;object=alice``. Path
attributes ``token`` (label), ``object`` (CKA_LABEL) and ``id`` (CKA_ID, percent-encoded bytes) pick the key;
``serial``, ``manufacturer`` and ``model`` if given must match the token; ``type`` may only be ``private``.
Query attributes: ``module-path`` (the PKCS#11 library) and ``pin-source`` (``file:/path`` or a path to a
file holding the PIN). ``pin-value`` is refused: a PIN on a command line ends up in shell histories and
process listings. What the URI leaves out comes from ``STRONGROOM_PKCS11_MODULE``,
``STRONGROOM_PKCS11_TOKEN_LABEL`` and ``STRONGROOM_PKCS11_PIN``, or the ``[pkcs11]`` section (``module``,
``token_label``, ``pin_file``) of the key settings file (``strongroom.keys.settings``, the same settings the
KEK provider reads; the file is ``$STRONGROOM_KEY_CONFIG`` unless given).

Mechanisms: Ed25519 keys (CKK_EC_EDWARDS) sign with CKM_EDDSA (pure Ed25519, no parameters; PKCS#11 v3.0
section 2.3.14), so the token's signature is the 64-byte RFC 8032 signature ``Verifier`` checks. ECDSA keys
(CKK_EC on P-256, P-384 or P-521) sign with CKM_ECDSA over a digest computed here (SHA-256/384/512 by curve,
as ``Signer`` pairs them): the token returns raw ``r || s``, which is DER-encoded with s folded to the low
half of the group, exactly what ``Signer`` produces. Every signature is verified against the public key
before it is returned, so a faulty token, or a public key object that does not belong to the private key,
can never put a bad signature into a custody message (and a faulted Ed25519 signature, which can leak the
key, never leaves this process).

The key id is the SHA-256 of the public key's DER SubjectPublicKeyInfo, as for file keys, read from the
public key object beside the private one (same CKA_ID, else same label) or from a certificate with the same
CKA_ID: enrol the person, host or officer with ``gen-token-signer``'s public PEM and the ids agree. A private
key that is extractable, not sensitive, or not allowed to sign is refused. Login sessions are shared with the
KEK provider (``strongroom.keys.pkcs11``): PKCS#11 login state is per process and token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11

from strongroom import process
from strongroom.keys import pkcs11 as p11provider
from strongroom.keys.errors import KeyProviderError, KeySettingsError, ProviderAuthError
from strongroom.keys.settings import KeySettings
from strongroom.signing import (
    PKCS11_SCHEME,
    BadSignatureError,
    KeyReferenceError,
    KeyType,
    PublicKey,
    TokenAuthError,
    TokenKeyError,
    TokenKeyNotFoundError,
    TokenKeyPolicyError,
    TokenUnavailableError,
    Verifier,
    low_s_der,
)

KEY_CONFIG_ENV = "STRONGROOM_KEY_CONFIG"
PATH_ATTRIBUTES = ("token", "object", "id", "type", "serial", "manufacturer", "model")
QUERY_ATTRIBUTES = ("module-path", "pin-source")

# CKA_EC_PARAMS (DER) of the curves Strongroom verifies; Ed25519 by OID 1.3.101.112 or by the PKCS#11 v3.0
# curve name "edwards25519" (a PrintableString), which tokens use interchangeably.
_EC_PARAMS: dict[bytes, tuple[KeyType, str]] = {
    bytes.fromhex("06082a8648ce3d030107"): ("ecdsa-p256", "secp256r1"),
    bytes.fromhex("06052b81040022"): ("ecdsa-p384", "secp384r1"),
    bytes.fromhex("06052b81040023"): ("ecdsa-p521", "secp521r1"),
    bytes.fromhex("06032b6570"): ("ed25519", "ed25519"),
    bytes.fromhex("130c") + b"edwards25519": ("ed25519", "ed25519"),
}
_PARAMS_FOR: dict[KeyType, bytes] = {
    "ed25519": bytes.fromhex("06032b6570"),
    "ecdsa-p256": bytes.fromhex("06082a8648ce3d030107"),
    "ecdsa-p384": bytes.fromhex("06052b81040022"),
    "ecdsa-p521": bytes.fromhex("06052b81040023"),
}
_CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}
_DIGESTS = {"secp256r1": hashlib.sha256, "secp384r1": hashlib.sha384, "secp521r1": hashlib.sha512}
_COORDINATE_BYTES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}


# -- references ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI naming one private key (RFC 7512), without any PIN value."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if text[: len(PKCS11_SCHEME)].lower() != PKCS11_SCHEME:
            raise KeyReferenceError(f"{text!r} is not a pkcs11: URI")
        shown = _redact(text)  # error messages never repeat a PIN, wherever it was put
        if any(item.partition("=")[0].lower() == "pin-value" for item in re.split("[;?&]", text)):
            raise KeyReferenceError(
                f"{shown}: pin-value is refused (a PIN on a command line is visible to other users); "
                "use STRONGROOM_PKCS11_PIN, [pkcs11] pin_file, or pin-source=file:/path"
            )
        body = text[len(PKCS11_SCHEME) :]
        path, _, query = body.partition("?")
        fields: dict[str, bytes] = {}
        for part, separator, allowed in ((path, ";", PATH_ATTRIBUTES), (query, "&", QUERY_ATTRIBUTES)):
            for item in part.split(separator) if part else ():
                name, eq, value = item.partition("=")
                name = name.lower()
                if not eq or not value:
                    raise KeyReferenceError(f"{shown}: attribute {item!r} must be name=value")
                if name not in allowed:
                    where = "path" if separator == ";" else "query"
                    raise KeyReferenceError(
                        f"{shown}: unsupported {where} attribute {name!r} (Strongroom reads {', '.join(allowed)})"
                    )
                if name in fields:
                    raise KeyReferenceError(f"{shown}: attribute {name!r} appears twice")
                fields[name] = unquote_to_bytes(value)
        try:
            strings = {k.replace("-", "_"): v.decode("utf-8") for k, v in fields.items() if k != "id"}
        except UnicodeDecodeError:
            raise KeyReferenceError(f"{shown}: an attribute other than id is not UTF-8") from None
        uri = cls(id=fields.get("id"), **strings)
        if uri.object is None and uri.id is None:
            raise KeyReferenceError(f"{shown}: names no key; add object=LABEL (or id=%xx...)")
        if uri.type is not None and uri.type != "private":
            raise KeyReferenceError(f"{shown}: type={uri.type} names no private key; a signer needs type=private")
        return uri

    def __str__(self) -> str:
        def enc(value: str | bytes) -> str:
            return quote(value, safe="") if isinstance(value, str) else "".join(f"%{b:02x}" for b in value)

        path = [
            f"{name}={enc(value)}"
            for name, value in (
                ("token", self.token),
                ("manufacturer", self.manufacturer),
                ("model", self.model),
                ("serial", self.serial),
                ("object", self.object),
                ("id", self.id),
                ("type", self.type),
            )
            if value is not None
        ]
        query = [
            f"{name}={quote(value, safe='/:')}"
            for name, value in (("module-path", self.module_path), ("pin-source", self.pin_source))
            if value is not None
        ]
        return PKCS11_SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")


def _redact(text: str) -> str:
    """The URI without any pin-value attribute, for error messages."""
    path, _, query = text.partition("?")

    def keep(items: str, separator: str) -> str:
        return separator.join(i for i in items.split(separator) if i.partition("=")[0].lower() != "pin-value")

    kept = keep(query, "&")
    return keep(path, ";") + ("?" + kept if kept else "")


@dataclass(frozen=True)
class TokenAccess:
    """Where a token key lives and how to log in: the PKCS#11 module, the token label, the PIN."""

    module: str
    token_label: str
    pin: str

    def __repr__(self) -> str:
        return f"TokenAccess(module={self.module!r}, token_label={self.token_label!r}, pin='***')"


def _read_pin_source(uri: Pkcs11Uri) -> str:
    source = uri.pin_source or ""
    if source.startswith("file:"):
        raw = source[len("file:") :]
        path = Path("/" + raw.lstrip("/")) if raw.startswith("/") else Path(raw)
    elif ":" in source.split("/", 1)[0]:
        raise KeyReferenceError(f"{uri}: pin-source must be file:/path or a file path")
    else:
        path = Path(source)
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise KeyReferenceError(f"{uri}: pin-source {path}: cannot read ({reason})") from None


def resolve_access(uri: Pkcs11Uri, *, env: Mapping[str, str] | None = None, config: Path | None = None) -> TokenAccess:
    """Module, token label and PIN for ``uri``: the URI first, then ``STRONGROOM_PKCS11_*`` variables, then
    the ``[pkcs11]`` section of the key settings file."""
    env = process.environment() if env is None else env  # the CLI takes the PIN out of os.environ
    if config is None and env.get(KEY_CONFIG_ENV):
        config = Path(env[KEY_CONFIG_ENV])
    overlay = dict(env)
    if uri.token is not None:
        overlay["STRONGROOM_PKCS11_TOKEN_LABEL"] = uri.token
    if uri.module_path is not None:
        overlay["STRONGROOM_PKCS11_MODULE"] = uri.module_path
    if uri.pin_source is not None:
        overlay["STRONGROOM_PKCS11_PIN"] = _read_pin_source(uri)
    if "STRONGROOM_PKCS11_TOKEN_LABEL" not in overlay and config is None:
        raise KeyReferenceError(
            f"{uri}: names no token; give token=LABEL (or set STRONGROOM_PKCS11_TOKEN_LABEL or [pkcs11] token_label)"
        )
    try:
        settings = KeySettings.load(config, env=overlay, provider="pkcs11").pkcs11
    except KeySettingsError as exc:
        raise KeyReferenceError(f"{uri}: {exc}") from None
    assert settings is not None  # provider="pkcs11" makes load() require the section
    if settings.pin is None:
        raise TokenAuthError(
            f"{uri}: no PIN for token {settings.token_label!r}; set STRONGROOM_PKCS11_PIN, "
            "[pkcs11] pin_file, or pin-source=file:/path in the URI"
        )
    return TokenAccess(settings.module, settings.token_label, settings.pin.reveal())


# -- the signer ---------------------------------------------------------------------------------------


def _octets(value: bytes, size: int, what: str) -> bytes:
    """The content of a DER OCTET STRING of ``size`` bytes (CKA_EC_POINT since PKCS#11 v2.40), or ``value``
    itself where an older token stores the raw point."""
    if len(value) == size:
        return value
    if len(value) > 2 and value[0] == 0x04:
        if value[1] < 0x80:
            start, length = 2, value[1]
        elif value[1] == 0x81 and len(value) > 3:
            start, length = 3, value[2]
        else:
            start, length = 0, -1
        if length == size and len(value) == start + length:
            return value[start:]
    raise TokenKeyPolicyError(f"{what}: CKA_EC_POINT is not a {size}-byte point")


def _public_from_point(key_type: KeyType, curve: str, point: bytes, what: str) -> PublicKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(_octets(point, 32, what))
    size = 1 + 2 * _COORDINATE_BYTES[curve]
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[curve], _octets(point, size, what))
    except ValueError:
        raise TokenKeyPolicyError(f"{what}: CKA_EC_POINT is not a point on {curve}") from None


class Pkcs11Signer:
    """A ``SigningKey`` whose private key stays inside a PKCS#11 token; the token signs, this process never
    sees the key. Thread-safe (operations on the token are serialised). ``close()`` releases the login."""

    def __init__(self, uri: Pkcs11Uri, access: TokenAccess) -> None:
        self._uri = uri
        self._access = access
        self._object_id = b""
        self._login: p11provider._TokenLogin | None = _login(access)
        try:
            login = self._live()
            with login.lock:
                self._token_checks(login.session)
                self._private, self._key_type, self._curve = self._find_private(login.session)
                public = self._find_public(login.session)
            self._verifier = Verifier(public)
            if self._verifier.key_type != self._key_type:
                raise TokenKeyPolicyError(
                    f"{self}: the public key beside it is {self._verifier.key_type}, the private key {self._key_type}"
                )
        except BaseException:
            self.close()
            raise

    # -- SigningKey

    @property
    def key_id(self) -> str:
        return self._verifier.key_id

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def verifier(self) -> Verifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        """Ed25519 by CKM_EDDSA, or CKM_ECDSA over the curve's digest turned into low-S DER; verified here."""
        login = self._live()
        with login.lock:
            try:
                if self._key_type == "ed25519":
                    signature = bytes(self._private.sign(message, mechanism=Mechanism.EDDSA))
                else:
                    digest = _DIGESTS[self._curve](message).digest()
                    raw = bytes(self._private.sign(digest, mechanism=Mechanism.ECDSA))
                    half = _COORDINATE_BYTES[self._curve]
                    if len(raw) != 2 * half:
                        raise TokenKeyError(f"{self}: CKM_ECDSA returned {len(raw)} bytes, not {2 * half}")
                    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
                    signature = low_s_der(r, s, self._curve)
            except p11.PKCS11Error as exc:
                raise TokenKeyError(f"{self}: the token refused to sign ({type(exc).__name__})") from None
        try:
            self._verifier.verify(signature, message)
        except BadSignatureError:
            raise TokenKeyError(
                f"{self}: the token's signature does not verify under its public key (faulty token, or a public "
                "key object that does not belong to this private key): withheld"
            ) from None
        return signature

    # -- more

    @property
    def uri(self) -> str:
        """A URI naming this key: its token label and object label (its id too if it was named by id); never
        a PIN or module path."""
        named = dataclasses.replace(self._uri, token=self._access.token_label, module_path=None, pin_source=None)
        return str(named)

    def attributes(self) -> dict[str, bool]:
        """The private key's protection attributes as the token reports them (for audits and tests)."""
        names = ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "SIGN", "TOKEN", "PRIVATE")
        login = self._live()
        with login.lock:
            return {name: bool(self._private[getattr(Attribute, name)]) for name in names}

    def close(self) -> None:
        """Release this signer's hold on the token login (the last holder in the process logs out)."""
        login, self._login = self._login, None
        if login is not None:
            p11provider._release(login)

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return f"PKCS#11 key {self.uri}"

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self.uri!r})"

    def _live(self) -> p11provider._TokenLogin:
        if self._login is None:
            raise TokenKeyError(f"{self}: signer is closed")
        return self._login

    def _token_checks(self, session: Any) -> None:
        token = session.token
        actual = {
            "serial": bytes(token.serial).decode("ascii", "replace").strip(),
            "manufacturer": str(token.manufacturer_id).strip(),
            "model": str(token.model).strip(),
        }
        for name, wanted in (
            ("serial", self._uri.serial),
            ("manufacturer", self._uri.manufacturer),
            ("model", self._uri.model),
        ):
            if wanted is not None and actual[name] != wanted:
                raise TokenUnavailableError(f"{self}: token {self._access.token_label!r} has {name} {actual[name]!r}")

    def _find_private(self, session: Any) -> tuple[Any, KeyType, str]:
        template: dict[Any, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if self._uri.object is not None:
            template[Attribute.LABEL] = self._uri.object
        if self._uri.id is not None:
            template[Attribute.ID] = self._uri.id
        found = list(session.get_objects(template))
        if not found:
            raise TokenKeyNotFoundError(f"{self}: token {self._access.token_label!r} holds no such private key")
        if len(found) > 1:
            raise TokenKeyNotFoundError(f"{self}: {len(found)} private keys match; add id= to the URI")
        key = found[0]
        kind = key[Attribute.KEY_TYPE]
        if kind not in (P11KeyType.EC, P11KeyType.EC_EDWARDS):
            raise TokenKeyPolicyError(f"{self}: a {getattr(kind, 'name', kind)} key; Strongroom signs with EC/EdDSA")
        params = bytes(key[Attribute.EC_PARAMS])
        if params not in _EC_PARAMS:
            raise TokenKeyPolicyError(f"{self}: unsupported curve (use Ed25519, P-256, P-384 or P-521)")
        key_type, curve = _EC_PARAMS[params]
        if (kind == P11KeyType.EC_EDWARDS) != (key_type == "ed25519"):
            raise TokenKeyPolicyError(f"{self}: key type and curve disagree")
        if not key[Attribute.SIGN]:
            raise TokenKeyPolicyError(f"{self}: the token does not allow this key to sign (CKA_SIGN false)")
        if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
            raise TokenKeyPolicyError(
                f"{self}: extractable or not sensitive, so its value could leave the token: refused "
                "(make a new key with 'strongroom keys gen-token-signer')"
            )
        self._object_id = bytes(key[Attribute.ID])
        return key, key_type, curve

    def _find_public(self, session: Any) -> PublicKey:
        by: dict[Any, Any] = (
            {Attribute.ID: self._object_id} if self._object_id else {Attribute.LABEL: self._private[Attribute.LABEL]}
        )
        publics = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **by}))
        if len(publics) > 1:
            raise TokenKeyNotFoundError(f"{self}: {len(publics)} public keys share its id/label: ambiguous")
        if publics:
            return _public_from_point(self._key_type, self._curve, bytes(publics[0][Attribute.EC_POINT]), str(self))
        if self._object_id:
            certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, **by}))
            if len(certs) == 1:
                public = x509.load_der_x509_certificate(bytes(certs[0][Attribute.VALUE])).public_key()
                if isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
                    return public
        raise TokenKeyNotFoundError(
            f"{self}: no public key object (or certificate) beside the private key, so its key id is unknown"
        )


def _login(access: TokenAccess) -> p11provider._TokenLogin:
    """A shared logged-in session on the token, provider errors turned into signing-key errors."""
    try:
        return p11provider._acquire(access.module, access.token_label, access.pin)
    except ProviderAuthError as exc:
        raise TokenAuthError(str(exc)) from None
    except KeyProviderError as exc:
        raise TokenUnavailableError(str(exc)) from None


def open_token_signer(
    ref: str | Pkcs11Uri,
    *,
    module: str | None = None,
    pin: str | None = None,
    env: Mapping[str, str] | None = None,
    config: Path | None = None,
) -> Pkcs11Signer:
    """Open the token key ``ref`` names (a ``pkcs11:`` URI); ``module`` and ``pin``, if given, override every
    other source (see ``resolve_access``)."""
    uri = ref if isinstance(ref, Pkcs11Uri) else Pkcs11Uri.parse(ref)
    if module is not None or pin is not None:
        extra = dict(process.environment() if env is None else env)
        if module is not None:
            extra["STRONGROOM_PKCS11_MODULE"] = module
        if pin is not None:
            extra["STRONGROOM_PKCS11_PIN"] = pin
        env = extra
    return Pkcs11Signer(uri, resolve_access(uri, env=env, config=config))


def generate_token_signer(access: TokenAccess, label: str, key_type: KeyType = "ed25519") -> Pkcs11Signer:
    """Generate a signing key pair inside the token, labelled ``label`` with a fresh random CKA_ID: the
    private half sensitive, non-extractable and sign-only; the public half a token object beside it."""
    if key_type not in _PARAMS_FOR:
        raise TokenKeyPolicyError(f"unknown key type {key_type!r} (ed25519, ecdsa-p256, ecdsa-p384 or ecdsa-p521)")
    if not label:
        raise KeyReferenceError("a token key needs a non-empty label")
    key_id = os.urandom(16)
    login = _login(access)
    try:
        with login.lock:
            session = login.session
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                if list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label})):
                    raise TokenKeyPolicyError(f"token {access.token_label!r} already holds a key labelled {label!r}")
            common = {Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.ID: key_id}
            public_template = {
                **common,
                Attribute.PRIVATE: False,
                Attribute.VERIFY: True,
                Attribute.ENCRYPT: False,
                Attribute.WRAP: False,
                Attribute.DERIVE: False,
                Attribute.EC_PARAMS: _PARAMS_FOR[key_type],
            }
            private_template = {
                **common,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            }
            ed = key_type == "ed25519"
            try:
                session.generate_keypair(
                    P11KeyType.EC_EDWARDS if ed else P11KeyType.EC,
                    mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN if ed else Mechanism.EC_KEY_PAIR_GEN,
                    public_template=public_template,
                    private_template=private_template,
                    store=True,
                )
            except p11.PKCS11Error as exc:
                raise TokenKeyError(
                    f"token {access.token_label!r}: cannot generate a {key_type} key pair ({type(exc).__name__})"
                ) from None
    finally:
        p11provider._release(login)
    return Pkcs11Signer(Pkcs11Uri(token=access.token_label, object=label), access)
