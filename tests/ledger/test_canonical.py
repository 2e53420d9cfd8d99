"""The fast canonical form and check agree with the RFC 8785 reference on every JSON value, hard cases included."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.canonical_json import canonical_json, is_canonical

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@given(JSON)
@settings(max_examples=400, deadline=None)
def test_agrees_with_rfc8785(value: Any) -> None:
    try:
        canonical = rfc8785.dumps(value)
    except Exception:
        return  # not representable in JCS (e.g. integers beyond 2^53 in some libraries)
    assert canonical_json(value) == canonical
    assert is_canonical(value, canonical)
    pretty = json.dumps(value, indent=1, ensure_ascii=True).encode()
    if pretty != canonical:
        assert not is_canonical(value, pretty)


def test_hard_cases() -> None:
    for value in [{"\U0001f600": 1, "\ufb01": 2}, {"n": 1e21}, {"n": 2**53 + 1}, {"s": "\u2028\x7f\x1f"}]:
        try:
            canonical = rfc8785.dumps(value)
        except Exception:
            continue
        assert canonical_json(value) == canonical
        assert is_canonical(value, canonical)
        assert not is_canonical(value, json.dumps(value).encode())
