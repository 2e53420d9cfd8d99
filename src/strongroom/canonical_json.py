"""Canonical JSON (RFC 8785, JCS): the one byte form Strongroom signs, hashes and compares."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE_INT = 2**53


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to RFC 8785 canonical JSON bytes (in C when that provably gives the same bytes)."""
    if _plain(value):
        try:
            return _compact(value)
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference implementation judge it
    return rfc8785.dumps(value)


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _plain(value: Any) -> bool:
    """True when JCS and sorted compact ``json.dumps`` provably agree on ``value``.

    They differ only on floats (JCS uses ECMAScript number formatting), integers beyond 2^53, and key
    order when keys hold characters at or above U+D800 (JCS sorts by UTF-16 code units). A loop rather
    than recursion: this runs on every signed message and ledger entry.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict:
            for key, child in item.items():
                if type(key) is not str or (not key.isascii() and max(key) >= "\ud800"):
                    return False
                stack.append(child)
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -_SAFE_INT < item < _SAFE_INT:
                return False
        else:
            return False
    return True


def is_canonical(value: Any, raw: bytes) -> bool:
    """Whether ``raw`` is exactly the canonical form of ``value`` (fast path in C where that is exact)."""
    if _plain(value):
        try:
            return _compact(value) == raw
        except UnicodeEncodeError:
            return False
    return canonical_json(value) == raw
