"""Strict JSON documents for attestation evidence: exact key sets, standard base64, typed errors.

Every ``from_json`` in this package parses with ``strongroom.strict_json`` (no duplicate keys, no NaN, bounded
depth) and these helpers, so malformed evidence raises ``TpmFormatError`` and never a ``KeyError`` or
``ValueError`` from deep inside.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from strongroom.attest.errors import TpmFormatError
from strongroom.canonical_json import canonical_json
from strongroom.strict_json import StrictJSONError, loads

MAX_DOCUMENT = 64 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dumps(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: one byte form per document."""
    return canonical_json(dict(value))


def document(raw: bytes | str, what: str, fields: set[str], version: int = 1) -> dict[str, Any]:
    """Parse a JSON object with exactly ``fields`` (plus ``version`` == ``version``)."""
    if len(raw) > MAX_DOCUMENT:
        raise TpmFormatError(f"{what}: document larger than {MAX_DOCUMENT} bytes")
    try:
        value = loads(raw)
    except (StrictJSONError, UnicodeDecodeError) as exc:
        raise TpmFormatError(f"{what}: not valid JSON: {exc}") from None
    return fields_of(value, what, fields, version)


def fields_of(value: Any, what: str, fields: set[str], version: int | None = 1) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TpmFormatError(f"{what}: not a JSON object")
    wanted = fields | ({"version"} if version is not None else set())
    if set(value) != wanted:
        raise TpmFormatError(f"{what}: fields {sorted(value)} are not {sorted(wanted)}")
    if version is not None and (type(value["version"]) is not int or value["version"] != version):
        raise TpmFormatError(f"{what}: version is not {version}")
    return value


def unb64(value: Any, what: str, field: str, *, size: int | None = None, maximum: int = 8192) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * ((maximum + 2) // 3):
        raise TpmFormatError(f"{what}: {field} is not a base64 string of at most {maximum} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TpmFormatError(f"{what}: {field} is not base64") from None
    if size is not None and len(data) != size:
        raise TpmFormatError(f"{what}: {field} is {len(data)} bytes, not {size}")
    return data


def pcr_index(key: Any, what: str) -> int:
    """A PCR index written as a JSON object key: a decimal string 0-23 without leading zeros."""
    if not isinstance(key, str) or not key.isdigit() or str(int(key)) != key or not 0 <= int(key) <= 23:
        raise TpmFormatError(f"{what}: PCR index {key!r} is not 0-23")
    return int(key)


def hex_digest(value: Any, what: str, size: int = 32) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise TpmFormatError(f"{what}: {value!r} is not a {size}-byte hex digest")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise TpmFormatError(f"{what}: {value!r} is not hex") from None
    if data.hex() != value:
        raise TpmFormatError(f"{what}: hex digests are lowercase")
    return data


def text(value: Any, what: str, field: str, maximum: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > maximum:
        raise TpmFormatError(f"{what}: {field} is not a non-empty string of at most {maximum} characters")
    return value


def loads_json(raw: bytes) -> Any:
    """Parse JSON this package produced itself (to nest one document in another)."""
    return loads(raw)
