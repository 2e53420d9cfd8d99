"""Canonical JSON (RFC 8785, JCS): the one byte form Strongroom signs, hashes and compares."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE_INT = 2**53


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to RFC 8785 canonical JSON bytes."""
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """True when JCS and sorted compact ``json.dumps`` provably agree on ``value``.

    They differ only on floats (JCS uses ECMAScript number formatting), integers beyond 2^53, and key
    order when keys hold characters at or above U+D800 (JCS sorts by UTF-16 code units).
    """
    if isinstance(value, dict):
        return all(isinstance(k, str) and max(k, default="\0") < "\ud800" and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -_SAFE_INT < value < _SAFE_INT
    return False


def is_canonical(value: Any, raw: bytes) -> bool:
    """Whether ``raw`` is exactly the canonical form of ``value`` (fast path in C where that is exact)."""
    if _plain(value):
        try:
            fast = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError):
            return False
        return fast == raw
    return canonical_json(value) == raw
