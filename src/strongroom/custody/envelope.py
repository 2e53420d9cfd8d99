"""Signed envelopes for custody messages, and the strict field and time checks every message shares.

A message is ``{"payload": {...}, "signer": <key id>, "signature": <base64>}``: the signature covers
``canonical_json(payload)`` (RFC 8785) and ``payload["type"]`` separates the kinds. An administrative
change is co-signed: ``{"payload": {...}, "signatures": [{"signer", "signature"}, ...]}``, every officer
signing the same canonical payload. A payload's SHA-256 is its id, so approvals and co-signatures cannot be
moved to another message; nonces and expiry times stop replays.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom import strict_json
from strongroom.canonical_json import canonical_json
from strongroom.custody.errors import MessageError, NotAuthorisedError
from strongroom.signing import BadSignatureError, SigningKey, Verifier

MAX_LIFETIME = timedelta(hours=24)
CLOCK_SKEW = timedelta(seconds=60)
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SIGNATURES = 16
HEX = re.compile(r"^[0-9a-f]+$")
MODEL_ID = re.compile(r"^(blake3|sha256):[0-9a-f]{64}$")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise MessageError(f"field {field!r} must be an RFC 3339 UTC time string")
    try:
        if not _TIME.fullmatch(value):
            raise ValueError(value)
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)  # strptime is ten times slower
    except ValueError:
        raise MessageError(f"field {field!r} is not a time like 2026-01-31T12:00:00Z") from None


def whole_seconds(moment: datetime) -> datetime:
    """The instant as logged (times on the ledger have one-second resolution): decisions use this, so the
    auditor, who only has the logged time, decides on exactly the same input."""
    return moment.replace(microsecond=0)


def load_json(value: Any, what: str) -> Any:
    """Strict JSON (``strongroom.strict_json``: no NaN or Infinity, integers within 2^53, no duplicate keys,
    at most 64 deep, UTF-8): MessageError with the reason otherwise."""
    if isinstance(value, bytes | str):
        if len(value) > MAX_MESSAGE_BYTES:
            raise MessageError(f"{what}: larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            return strict_json.loads(value)
        except strict_json.StrictJSONError as exc:
            raise MessageError(f"{what}: not valid JSON: {exc}") from None
    return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 1024:
        raise MessageError(f"{what}: signature must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise MessageError(f"{what}: signature is not base64") from None


def _payload(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"{what}: payload must be an object")
    return value


def _canonical(payload: dict[str, Any], what: str) -> bytes:
    """The RFC 8785 bytes a payload is signed over, refused if it has none or is too large."""
    try:
        raw = canonical_json(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MessageError(f"{what}: payload is not canonical JSON ({exc.__class__.__name__})") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(f"{what}: payload larger than {MAX_MESSAGE_BYTES} bytes")
    return raw


@dataclass(frozen=True)
class SignedMessage:
    """A payload, the key id that signed it, and the signature."""

    payload: dict[str, Any]
    signer: str
    signature: bytes
    canonical: bytes = field(init=False, repr=False, compare=False)  # the signed bytes, computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", _canonical(self.payload, "signed message"))

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "signer": self.signer, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def sign(cls, payload: dict[str, Any], signer: SigningKey) -> SignedMessage:
        return cls(payload, signer.key_id, signer.sign(_canonical(payload, "message")))

    @classmethod
    def from_json(cls, value: Any, what: str) -> SignedMessage:
        value = load_json(value, what)
        if not isinstance(value, dict) or set(value) != {"payload", "signer", "signature"}:
            raise MessageError(f"{what}: must be an object with exactly payload, signer and signature")
        if not isinstance(value["signer"], str):
            raise MessageError(f"{what}: signer must be a string")
        return cls(_payload(value["payload"], what), value["signer"], _b64(value["signature"], what))

    def verify(self, verifier: Verifier, what: str) -> None:
        """Check the signer names ``verifier`` and the signature covers the payload exactly."""
        if verifier.key_id != self.signer:
            raise MessageError(f"{what}: signed by key {self.signer[:16]}, not by {verifier.key_id[:16]}")
        try:
            verifier.verify(self.signature, self.canonical)
        except BadSignatureError:
            raise MessageError(f"{what}: signature does not verify (forged or altered)") from None


@dataclass(frozen=True)
class CoSigned:
    """A payload and the signatures of everyone who agreed to it (officers, for administrative changes)."""

    payload: dict[str, Any]
    signatures: tuple[tuple[str, bytes], ...]
    canonical: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", _canonical(self.payload, "co-signed message"))

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()

    @property
    def signers(self) -> list[str]:
        return [signer for signer, _ in self.signatures]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "signatures": [{"signer": k, "signature": base64.b64encode(s).decode()} for k, s in self.signatures],
        }

    @classmethod
    def sign(cls, payload: dict[str, Any], signer: SigningKey) -> CoSigned:
        return cls(payload, ()).cosign(signer)

    def cosign(self, signer: SigningKey) -> CoSigned:
        """The same payload with one more signature (signing twice with one key changes nothing)."""
        if signer.key_id in self.signers:
            return self
        return CoSigned(self.payload, (*self.signatures, (signer.key_id, signer.sign(self.canonical))))

    @classmethod
    def from_json(cls, value: Any, what: str) -> CoSigned:
        value = load_json(value, what)
        if not isinstance(value, dict) or set(value) != {"payload", "signatures"}:
            raise MessageError(f"{what}: must be an object with exactly payload and signatures")
        raw = value["signatures"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SIGNATURES:
            raise MessageError(f"{what}: signatures must be a list of 1 to {MAX_SIGNATURES}")
        signatures: list[tuple[str, bytes]] = []
        for item in raw:
            if (
                not isinstance(item, dict)
                or set(item) != {"signer", "signature"}
                or not isinstance(item["signer"], str)
            ):
                raise MessageError(f"{what}: each signature must be {{signer, signature}}")
            if item["signer"] in (k for k, _ in signatures):
                raise MessageError(f"{what}: key {item['signer'][:16]} signed twice")
            signatures.append((item["signer"], _b64(item["signature"], what)))
        return cls(_payload(value["payload"], what), tuple(signatures))

    def verified_signers(self, keys: Mapping[str, Verifier], what: str) -> set[str]:
        """The key ids among ``keys`` whose signatures verify; any other signer, or any bad signature, refuses
        the whole message (a co-signed change is exactly what its signers agreed to)."""
        message = self.canonical
        verified: set[str] = set()
        for signer, signature in self.signatures:
            verifier = keys.get(signer)
            if verifier is None:
                raise NotAuthorisedError(f"{what}: signed by key {signer[:16]}, which is not an officer")
            try:
                verifier.verify(signature, message)
            except BadSignatureError:
                raise MessageError(f"{what}: the signature of key {signer[:16]} does not verify") from None
            verified.add(signer)
        return verified


def check_fields(payload: dict[str, Any], allowed: AbstractSet[str], required: AbstractSet[str], what: str) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise MessageError(f"{what}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(payload))
    if missing:
        raise MessageError(f"{what}: missing field {missing[0]!r}")


def text(payload: dict[str, Any], field: str, what: str, limit: int = 512) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MessageError(f"{what}: field {field!r} must be a non-empty string of at most {limit} characters")
    return value


def hex_text(payload: dict[str, Any], field: str, what: str, *, exact: int | None = None, least: int = 1) -> str:
    value = text(payload, field, what, 128)
    if not HEX.match(value) or (exact is not None and len(value) != exact) or len(value) < least:
        size = f"{exact}" if exact is not None else f"at least {least}"
        raise MessageError(f"{what}: field {field!r} must be {size} lowercase hex digits")
    return value


def nonce(payload: dict[str, Any], what: str) -> str:
    return hex_text(payload, "nonce", what, least=32)


def model_id(payload: dict[str, Any], what: str) -> str:
    value = payload.get("model_id")
    if not isinstance(value, str) or not MODEL_ID.match(value):
        raise MessageError(f"{what}: model_id must be blake3:<64 hex> or sha256:<64 hex>")
    return value


def b64_bytes(payload: dict[str, Any], field: str, what: str, size: int | None = None) -> bytes:
    raw = text(payload, field, what, 2048)
    try:
        value = base64.b64decode(raw, validate=True)
    except ValueError:
        raise MessageError(f"{what}: field {field!r} is not base64") from None
    if size is not None and len(value) != size:
        raise MessageError(f"{what}: field {field!r} must be {size} bytes")
    return value


def window(payload: dict[str, Any], what: str) -> tuple[datetime, datetime]:
    """issued_at/expires_at, well-formed: expiry after issue and at most 24 hours later."""
    issued, expires = (
        parse_time(payload.get("issued_at"), "issued_at"),
        parse_time(payload.get("expires_at"), "expires_at"),
    )
    if expires <= issued or expires - issued > MAX_LIFETIME:
        raise MessageError(f"{what}: expires_at must be after issued_at and within 24 hours of it")
    return issued, expires


def check_fresh(issued: datetime, expires: datetime, now: datetime, what: str) -> None:
    """Issued not in the future (60 s of clock skew allowed) and not yet expired at ``now``."""
    if issued > now + CLOCK_SKEW:
        raise MessageError(f"{what}: issued in the future")
    if now >= expires:
        raise MessageError(f"{what}: expired at {format_time(expires)}")
