"""Hypothesis strategies for hostile input: JSON that Python's parser accepts but Strongroom must not (NaN,
1e400, huge integers, duplicate keys, deep nesting, lone surrogates), bytes that are not UTF-8, and text
with Unicode digits where ASCII digits belong."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

UNICODE_DIGITS = ["\u00b2", "\u0663", "\uff10", "\u0968", "\U0001d7ce", "\u2155", "\u00bd", "\u0660"]
NASTY_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "9" * 400, "9007199254740992", "-0"]

digits = st.one_of(st.sampled_from(UNICODE_DIGITS), st.sampled_from("0123456789"))
number_text = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(digits, min_size=1, max_size=6),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_json_text(draw: st.DrawFn) -> str:
    """JSON-looking text: valid JSON with a nasty number, a duplicate key, deep nesting or a lone surrogate
    spliced in, or plain garbage."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return '{"a": ' + draw(number_text) + "}"
    if kind == 1:
        key = draw(st.text(max_size=4)).replace('"', "").replace("\\", "")
        return f'{{"{key}": 1, "{key}": 2}}'
    if kind == 2:
        depth = draw(st.integers(60, 3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return opener * depth + "1" + closer * depth
    if kind == 3:
        return '["\\u' + draw(st.sampled_from(["d800", "dbff", "dc00", "DFFF"])) + '"]'
    if kind == 4:
        return draw(st.text(max_size=60))
    import json

    text = json.dumps(draw(json_value))
    cut = draw(st.integers(0, len(text)))
    return text[:cut] + draw(st.sampled_from(["NaN", "1e400", '"\\ud800"', "", "]", "{"])) + text[cut:]


hostile_bytes = st.one_of(
    hostile_json_text().map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    hostile_json_text().map(lambda t: t.encode("utf-16")),
    st.just(b"\xef\xbb\xbf{}"),
)
