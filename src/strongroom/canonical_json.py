"""Canonical JSON (RFC 8785, JCS): the one byte form Strongroom signs, hashes and compares."""

from __future__ import annotations

from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to RFC 8785 canonical JSON bytes."""
    return rfc8785.dumps(value)
