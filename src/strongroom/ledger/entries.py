"""Ledger entries: typed, schema-versioned JSON statements, signed by their author, in canonical form.

An entry is the RFC 8785 canonical JSON of::

    {"type": "model.registered", "schema": 1, "time": "2026-11-23T12:00:00Z", "body": {...},
     "signer": {"key_id": <hex SHA-256 of SPKI>, "public_key": <PEM>}, "signature": <base64>}

and the signature covers ``canonical_json({"domain": "strongroom-ledger-entry/v1", "type", "schema",
"time", "body"})``. The leaf of the Merkle tree is exactly the entry's bytes. The appender checks the
form, the schema of the body and the signature before sequencing: nothing malformed is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strongroom import strict_json
from strongroom.canonical_json import canonical_json, is_canonical
from strongroom.ledger.errors import EntryError
from strongroom.signing import BadSignatureError, SigningKey, SigningKeyError, Verifier

DOMAIN = "strongroom-ledger-entry/v1"
SCHEMA_VERSION = 1
MAX_ENTRY_BYTES = 60_000

# Required body fields and their JSON types, per entry type (schema version 1). Who may write each type,
# and what authorises it, is the custody authority model (strongroom.custody.authority), not the log's.
SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "authority.changed": {"officers": list, "threshold": int},
    "person.changed": {"person": str, "change": str, "authorisation": dict},
    "host.changed": {"host": str, "change": str, "authorisation": dict},
    "model.registered": {"model_id": str, "policy": dict, "key": dict, "authorisation": dict},
    "policy.changed": {"model_id": str, "policy": dict, "authorisation": dict},
    "key.released": {"model_id": str, "request_id": str, "approvers": list, "host": dict},
    "model.loaded": {"model_id": str, "request_id": str, "host": str, "statement": dict},
    "model.evaluated": {"model_id": str, "suite": str, "results": dict, "evaluator": str},
    "incident.changed": {"incident": str, "change": str, "authorisation": dict},
    "incident.step": {"incident": str, "step": str, "role": str, "statement": dict},
    "model.rekeyed": {"model_id": str, "key": dict, "retired": dict, "authorisation": dict},
    "fingerprint.changed": {"model_id": str, "policy": dict, "key_commitment": str, "authorisation": dict},
    "playbook.changed": {"name": str, "digest": str, "document": dict, "authorisation": dict},
    # custody ties to egress and location (strongroom.custody.projection): officers' changes
    "appender.changed": {"appender": str, "change": str, "authorisation": dict},
    "egress.cleared": {"host": str, "alarm_id": str, "authorisation": dict},
    "location.cleared": {"host": str, "verdict": int, "authorisation": dict},
    # attestation (strongroom.custody.attestation): golden values / manufacturer CAs, and refused attestations
    "attest.policy": {"policy": str, "change": dict, "authorisation": dict},
    "attest.refused": {"model_id": str, "request_id": str, "host": str, "reasons": list},
    # location (strongroom.geo): a landmark's enrolment or state change (custody service, officers), and a
    # verifier's verdict on a host (appenders allowed geo.verdict): the country, never the measurements
    "geo.landmark": {"landmark": str, "change": str, "authorisation": dict},
    "geo.verdict": {
        "host": str,
        "verdict": str,
        "country": str,
        "epoch": int,
        "landmark_set": str,
        "commitment": str,
        "method": str,
    },
    # egress (strongroom.egress.records): written by a weight host's gateway, an appender allowed these types
    "egress.checkpoint": {
        "host": str,
        "period_start": str,
        "bytes_used": int,
        "quota_bytes": int,
        "rules_digest": str,
        "meters": dict,
    },
    "egress.alarm": {"host": str, "model_id": str, "alarm_id": str, "kind": str, "detail": dict},
    "egress.exhausted": {
        "host": str,
        "model_id": str,
        "period_start": str,
        "meter": str,
        "used_bytes": int,
        "budget_bytes": int,
    },
}
ENTRY_FIELDS = {"type", "schema", "time", "body", "signer", "signature"}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_bytes(entry_type: str, schema: int, time: str, body: dict[str, Any]) -> bytes:
    return canonical_json({"domain": DOMAIN, "type": entry_type, "schema": schema, "time": time, "body": body})


@dataclass(frozen=True)
class Entry:
    """A decoded, verified entry."""

    type: str
    schema: int
    time: str
    body: dict[str, Any]
    signer: str
    raw: bytes

    @property
    def model_id(self) -> str | None:
        value = self.body.get("model_id")
        return value if isinstance(value, str) else None

    @property
    def person(self) -> str | None:
        for key in ("person", "requester"):
            value = self.body.get(key)
            if isinstance(value, str):
                return value
        return None


_TIME = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z")
# How every valid entry ends: in RFC 8785 form the keys are sorted, so signer, time and type come last, and
# a valid signer's key id is 64 lowercase hex digits. ``claimed_signer`` reads these without parsing.
_TAIL = re.compile(
    rb',"signer":\{"key_id":"([0-9a-f]{64})","public_key":"(?:[^"\\]|\\.)*"\},'
    rb'"time":"[^"\\]{0,64}","type":"([^"\\]{1,64})"\}\Z'
)


@functools.lru_cache(maxsize=4096)
def _verifier(pem: str) -> Verifier:
    """Signers append many entries: parse each PEM key (and compute its key id) once."""
    return Verifier.from_pem(pem.encode(), "entry signer")


def make_entry(entry_type: str, body: dict[str, Any], signer: SigningKey, time: str | None = None) -> bytes:
    """Build and sign an entry; the result is exactly what gets logged."""
    return build_entry(entry_type, body, signer, time).raw


def build_entry(entry_type: str, body: dict[str, Any], signer: SigningKey, time: str | None = None) -> Entry:
    """Build and sign an entry, returned decoded as well: an in-process writer need not parse its own bytes."""
    check_body(entry_type, body)
    stamp = time or now_text()
    signature = signer.sign(signed_bytes(entry_type, SCHEMA_VERSION, stamp, body))
    entry = {
        "type": entry_type,
        "schema": SCHEMA_VERSION,
        "time": stamp,
        "body": body,
        "signer": {"key_id": signer.key_id, "public_key": signer.verifier.pem().decode()},
        "signature": base64.b64encode(signature).decode(),
    }
    raw = canonical_json(entry)
    if len(raw) > MAX_ENTRY_BYTES:
        raise EntryError(f"{entry_type} entry is {len(raw)} bytes; the limit is {MAX_ENTRY_BYTES}")
    return Entry(entry_type, SCHEMA_VERSION, stamp, body, signer.key_id, raw)


def check_body(entry_type: str, body: Any) -> None:
    schema = SCHEMAS.get(entry_type)
    if schema is None:
        raise EntryError(f"unknown entry type {entry_type!r} (known: {', '.join(sorted(SCHEMAS))})")
    if not isinstance(body, dict):
        raise EntryError(f"{entry_type}: body must be a JSON object")
    for field, kind in schema.items():
        value = body.get(field)
        if value is None or not isinstance(value, kind) or (value == "" and kind is str):
            raise EntryError(f"{entry_type}: body field {field!r} missing or not a {getattr(kind, '__name__', kind)}")


def _signed_bytes_from_raw(raw: bytes, entry_type: str, schema: int, time: str) -> bytes:
    """``signed_bytes`` without re-serialising the body: in a canonical entry, ``body`` comes first and
    its canonical bytes appear verbatim, so they are cut out of ``raw`` (type and time are plain ASCII)."""
    text = raw.decode("utf-8")
    _, end = json.JSONDecoder().raw_decode(text, len('{"body":'))
    body = text[len('{"body":') : end].encode("utf-8")
    tail = f',"domain":"{DOMAIN}","schema":{schema},"time":{json.dumps(time)},"type":{json.dumps(entry_type)}}}'
    return b'{"body":' + body + tail.encode("ascii")


@dataclass(frozen=True)
class Claim:
    """What an entry says about itself (its type and its signer's key id), read without verifying anything."""

    type: str
    key_id: str


def claimed_signer(raw: bytes) -> Claim:
    """The entry's type and signer key id as it claims them, found with one regular expression and no JSON
    parsing or cryptography, so an HTTP appender can be refused before any work is spent on its entries.

    Every valid entry matches (canonical JSON puts ``signer``, ``time`` and ``type`` last); a claim is not
    a verified fact: ``parse_entry`` still checks everything, and callers compare its result to the claim.
    An entry that does not match is malformed: the error says how, found by the same cheap checks
    ``parse_entry`` starts with (strict JSON, fields, schema, canonical form), still without cryptography.
    """
    if len(raw) > MAX_ENTRY_BYTES:
        raise EntryError(f"entry is {len(raw)} bytes; the limit is {MAX_ENTRY_BYTES}")
    found = _TAIL.search(raw)
    if found is not None:
        try:
            return Claim(found.group(2).decode("utf-8"), found.group(1).decode("ascii"))
        except UnicodeDecodeError:
            pass
    value = _decode(raw)  # raises the specific reason; a well-formed entry that still does not match has:
    raise EntryError(f"{value['type']}: signer key_id must be 64 lowercase hex digits")


def _decode(raw: bytes) -> dict[str, Any]:
    """The checks that need no cryptography: strict JSON, fields, schema, time, canonical form."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise EntryError(f"entry is {len(raw)} bytes; the limit is {MAX_ENTRY_BYTES}")
    try:
        value = strict_json.loads(raw)
    except strict_json.StrictJSONError as exc:
        raise EntryError(f"entry is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) != ENTRY_FIELDS:
        raise EntryError(f"entry must have exactly the fields {', '.join(sorted(ENTRY_FIELDS))}")
    entry_type, schema, time, body = value["type"], value["schema"], value["time"], value["body"]
    if not isinstance(entry_type, str):
        raise EntryError("entry type must be a string")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise EntryError(f"{entry_type}: unsupported schema version {schema!r}")
    if not isinstance(time, str):
        raise EntryError(f"{entry_type}: time must be a string")
    if not _TIME.fullmatch(time):
        raise EntryError(f"{entry_type}: time {time[:40]!r} is not like 2026-01-31T12:00:00Z")
    check_body(entry_type, body)
    signer = value["signer"]
    if not isinstance(signer, dict) or set(signer) != {"key_id", "public_key"}:
        raise EntryError(f"{entry_type}: signer must be {{key_id, public_key}}")
    if not isinstance(signer["public_key"], str) or not isinstance(signer["key_id"], str):
        raise EntryError(f"{entry_type}: signer key_id and public_key must be strings")
    if not isinstance(value["signature"], str):
        raise EntryError(f"{entry_type}: signature must be a base64 string")
    try:
        canonical = is_canonical(value, raw)
    except (ValueError, TypeError, RecursionError) as exc:  # strict JSON leaves none of these; belt and braces
        raise EntryError(f"{entry_type}: entry has no canonical form ({type(exc).__name__})") from None
    if not canonical:
        raise EntryError(f"{entry_type}: entry is not in canonical JSON form")
    return dict(value)


def parse_entry(raw: bytes) -> Entry:
    """Decode and fully verify an entry's bytes (strict JSON, canonical form, schema, signature)."""
    value = _decode(raw)
    entry_type, schema, time, body = value["type"], value["schema"], value["time"], value["body"]
    signer = value["signer"]
    try:
        verifier = _verifier(signer["public_key"])
        signature = base64.b64decode(value["signature"], validate=True)
    except (SigningKeyError, binascii.Error, ValueError) as exc:
        raise EntryError(f"{entry_type}: {str(exc)[:200]}") from None
    if verifier.key_id != signer["key_id"]:
        raise EntryError(f"{entry_type}: signer key_id does not match its public key")
    try:
        verifier.check_unique(signature)  # the leaf is the entry's bytes: one statement, one leaf
        verifier.verify(signature, _signed_bytes_from_raw(raw, entry_type, schema, time))
    except BadSignatureError as exc:
        raise EntryError(f"{entry_type}: signature does not verify (forged or altered): {exc}") from None
    return Entry(entry_type, schema, time, body, verifier.key_id, raw)
