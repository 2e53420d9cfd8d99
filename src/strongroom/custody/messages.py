"""Signed custody messages: release requests and approvals, each signed over its exact canonical content.

A message is ``{"payload": {...}, "signer": <key id>, "signature": <base64>}`` where the signature covers
``canonical_json(payload)`` and ``payload["type"]`` separates the kinds. A request's id is the SHA-256 of
its canonical payload, and an approval names that id, so an approval cannot be moved to another request;
nonces and expiry times stop replays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.custody.errors import MessageError
from strongroom.signing import BadSignatureError, Signer, Verifier

REQUEST_TYPE = "strongroom.release-request/v1"
APPROVAL_TYPE = "strongroom.release-approval/v1"
MAX_LIFETIME = timedelta(hours=24)
MAX_MESSAGE_BYTES = 64 * 1024
_HEX = re.compile(r"^[0-9a-f]+$")
_MODEL_ID = re.compile(r"^(blake3|sha256):[0-9a-f]{64}$")

REQUEST_FIELDS = {"type", "model_id", "purpose", "requester", "host", "nonce", "issued_at", "expires_at"}
HOST_FIELDS = {"host_id", "identity", "ephemeral"}
APPROVAL_FIELDS = {
    "type",
    "request_id",
    "model_id",
    "approver",
    "decision",
    "reason",
    "nonce",
    "issued_at",
    "expires_at",
    "share",
}


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


@dataclass(frozen=True)
class SignedMessage:
    """A payload, the key id that signed it, and the signature."""

    payload: dict[str, Any]
    signer: str
    signature: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.payload)).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "signer": self.signer, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def sign(cls, payload: dict[str, Any], signer: Signer) -> SignedMessage:
        return cls(payload, signer.key_id, signer.sign(canonical_json(payload)))

    @classmethod
    def from_json(cls, value: Any, what: str) -> SignedMessage:
        if isinstance(value, bytes | str):
            if len(value) > MAX_MESSAGE_BYTES:
                raise MessageError(f"{what}: larger than {MAX_MESSAGE_BYTES} bytes")
            try:
                value = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                raise MessageError(f"{what}: not valid JSON") from None
        if not isinstance(value, dict) or set(value) != {"payload", "signer", "signature"}:
            raise MessageError(f"{what}: must be an object with exactly payload, signer and signature")
        payload, signer, signature = value["payload"], value["signer"], value["signature"]
        if not isinstance(payload, dict) or not isinstance(signer, str) or not isinstance(signature, str):
            raise MessageError(f"{what}: payload must be an object, signer and signature strings")
        if len(canonical_json(payload)) > MAX_MESSAGE_BYTES:
            raise MessageError(f"{what}: payload larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            raise MessageError(f"{what}: signature is not base64") from None
        return cls(payload, signer, raw)

    def verify(self, verifier: Verifier, what: str) -> None:
        """Check the signer names ``verifier`` and the signature covers the payload exactly."""
        if verifier.key_id != self.signer:
            raise MessageError(f"{what}: signed by key {self.signer[:16]}, not by {verifier.key_id[:16]}")
        try:
            verifier.verify(self.signature, canonical_json(self.payload))
        except BadSignatureError:
            raise MessageError(f"{what}: signature does not verify (forged or altered)") from None


def _fields(payload: dict[str, Any], allowed: set[str], required: set[str], what: str) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise MessageError(f"{what}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(payload))
    if missing:
        raise MessageError(f"{what}: missing field {missing[0]!r}")


def _string(payload: dict[str, Any], field: str, what: str, limit: int = 512) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MessageError(f"{what}: field {field!r} must be a non-empty string of at most {limit} characters")
    return value


def check_window(payload: dict[str, Any], now: datetime, what: str) -> tuple[datetime, datetime]:
    """Validate issued_at/expires_at: issued not in the future (60 s skew), unexpired, lifetime <= 24 h."""
    issued, expires = (
        parse_time(payload.get("issued_at"), "issued_at"),
        parse_time(payload.get("expires_at"), "expires_at"),
    )
    if expires <= issued or expires - issued > MAX_LIFETIME:
        raise MessageError(f"{what}: expires_at must be after issued_at and within 24 hours of it")
    if issued > now + timedelta(seconds=60):
        raise MessageError(f"{what}: issued in the future")
    if now >= expires:
        raise MessageError(f"{what}: expired at {format_time(expires)}")
    return issued, expires


def validate_request(payload: dict[str, Any], now: datetime) -> None:
    what = "release request"
    _fields(payload, REQUEST_FIELDS, REQUEST_FIELDS, what)
    if payload["type"] != REQUEST_TYPE:
        raise MessageError(f"{what}: type must be {REQUEST_TYPE}")
    if not isinstance(payload["model_id"], str) or not _MODEL_ID.match(payload["model_id"]):
        raise MessageError(f"{what}: model_id must be blake3:<64 hex> or sha256:<64 hex>")
    _string(payload, "purpose", what, 1000)
    _string(payload, "requester", what, 128)
    nonce = _string(payload, "nonce", what, 64)
    if not _HEX.match(nonce) or len(nonce) < 32:
        raise MessageError(f"{what}: nonce must be at least 16 random bytes in hex")
    host = payload["host"]
    if not isinstance(host, dict):
        raise MessageError(f"{what}: host must be an object")
    _fields(host, HOST_FIELDS, HOST_FIELDS, f"{what} host")
    _string(host, "host_id", what, 128)
    _string(host, "identity", what, 1024)
    try:
        if len(base64.b64decode(_string(host, "ephemeral", what, 64), validate=True)) != 32:
            raise ValueError
    except ValueError:
        raise MessageError(f"{what}: host ephemeral key must be a base64 X25519 public key") from None
    check_window(payload, now, what)


def validate_approval(payload: dict[str, Any], now: datetime) -> None:
    what = "approval"
    _fields(payload, APPROVAL_FIELDS, APPROVAL_FIELDS - {"reason", "share"}, what)
    if payload["type"] != APPROVAL_TYPE:
        raise MessageError(f"{what}: type must be {APPROVAL_TYPE}")
    request_id = _string(payload, "request_id", what, 64)
    if not _HEX.match(request_id) or len(request_id) != 64:
        raise MessageError(f"{what}: request_id must be 64 hex digits")
    _string(payload, "approver", what, 128)
    if payload["decision"] not in ("approve", "deny"):
        raise MessageError(f"{what}: decision must be approve or deny")
    if "reason" in payload:
        _string(payload, "reason", what, 1000)
    if "share" in payload and not isinstance(payload["share"], dict):
        raise MessageError(f"{what}: share must be an object")
    nonce = _string(payload, "nonce", what, 64)
    if not _HEX.match(nonce) or len(nonce) < 32:
        raise MessageError(f"{what}: nonce must be at least 16 random bytes in hex")
    check_window(payload, now, what)


def new_request(
    *,
    model_id: str,
    purpose: str,
    requester: str,
    host_id: str,
    host_identity_pem: str,
    host_ephemeral: bytes,
    lifetime: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> dict[str, Any]:
    """A fresh request payload (sign it with the requester's key)."""
    issued = now or utc_now()
    return {
        "type": REQUEST_TYPE,
        "model_id": model_id,
        "purpose": purpose,
        "requester": requester,
        "host": {
            "host_id": host_id,
            "identity": host_identity_pem,
            "ephemeral": base64.b64encode(host_ephemeral).decode(),
        },
        "nonce": secrets.token_hex(16),
        "issued_at": format_time(issued),
        "expires_at": format_time(issued + lifetime),
    }


def new_approval(
    *,
    request: SignedMessage,
    approver: str,
    decision: str = "approve",
    reason: str | None = None,
    share: dict[str, Any] | None = None,
    lifetime: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> dict[str, Any]:
    """A fresh approval (or denial) payload bound to one request's digest."""
    issued = now or utc_now()
    payload: dict[str, Any] = {
        "type": APPROVAL_TYPE,
        "request_id": request.digest,
        "model_id": request.payload["model_id"],
        "approver": approver,
        "decision": decision,
        "nonce": secrets.token_hex(16),
        "issued_at": format_time(issued),
        "expires_at": format_time(issued + lifetime),
    }
    if reason:
        payload["reason"] = reason
    if share is not None:
        payload["share"] = share
    return payload
