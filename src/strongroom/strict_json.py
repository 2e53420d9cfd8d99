"""Strict JSON input: the one parser for JSON that arrives from outside (ledger entries, custody messages).

Python's ``json.loads`` accepts things that have no single meaning, or that break later code:

- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON at all), and ``1e400``, which becomes ``inf``;
- integers of any size (``10**5000`` costs quadratic time to convert, and RFC 8785 cannot encode any integer
  beyond 2^53 - 1, so such a value can never be signed or compared in canonical form);
- duplicate keys (the last one silently wins: a signer and a verifier could read two different messages);
- nesting as deep as the interpreter allows (later recursive code then fails with RecursionError);
- UTF-16 and UTF-32 input (it guesses the encoding), and unpaired surrogates (``"\\ud800"``), which no UTF-8
  encoder accepts.

``loads`` refuses all of these with ``StrictJSONError``, one line saying what was wrong (callers put it after
"not valid JSON: "). Limits: nesting at
most ``MAX_DEPTH`` (64) arrays and objects deep, integers within +/-(2^53 - 1) (I-JSON, RFC 7493 s. 2.2;
RFC 8785 s. 3.2.2.3), finite floats, number literals at most ``MAX_NUMBER_CHARS`` (64) characters, input in
UTF-8. Size limits belong to the caller, which knows what it reads (the HTTP layer caps bodies first).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from strongroom.errors import StrongroomError

MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53 - 1
MAX_NUMBER_CHARS = 64
_MAX_INT_CHARS = len(str(-MAX_SAFE_INTEGER))  # JSON integers have no leading zeros: longer is out of range
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class StrictJSONError(StrongroomError):
    """JSON input that is malformed or outside the limits Strongroom accepts."""


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number (not canonical JSON)")


def _integer(literal: str) -> int:
    if len(literal) > _MAX_INT_CHARS:
        raise StrictJSONError(f"integer of {len(literal)} digits is out of range (+/-(2^53 - 1): not canonical JSON)")
    value = int(literal)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise StrictJSONError(f"integer {literal} is out of range (+/-(2^53 - 1): not canonical JSON)")
    return value


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise StrictJSONError(f"number literal of {len(literal)} characters (limit {MAX_NUMBER_CHARS})")
    value = float(literal)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {literal} is out of range for a double (not canonical JSON)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_int=_integer, parse_float=_float, strict=True
)


def loads(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (UTF-8 bytes, or text) strictly; raises StrictJSONError with a one-line reason."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise StrictJSONError("a byte order mark is not allowed")
    try:
        value = _DECODER.decode(text)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError(f"nested more than {max_depth} deep") from None
    except ValueError as exc:  # json.JSONDecodeError, and int() past sys.get_int_max_str_digits()
        raise StrictJSONError(str(exc).splitlines()[0][:120] if str(exc) else "syntax error") from None
    _check_tree(value, max_depth, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    return value


def _check_tree(value: Any, max_depth: int, surrogates: bool) -> None:
    """Depth (and, if the text escapes a surrogate, that every string encodes), without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            if depth >= max_depth:
                raise StrictJSONError(f"nested more than {max_depth} deep")
            for key, child in item.items():
                if surrogates:
                    _encodable(key)
                if type(child) is dict or type(child) is list or (surrogates and type(child) is str):
                    stack.append((child, depth + 1))
        elif type(item) is list:
            if depth >= max_depth:
                raise StrictJSONError(f"nested more than {max_depth} deep")
            stack.extend((child, depth + 1) for child in item if type(child) in (dict, list) or surrogates)
        elif type(item) is str and surrogates:
            _encodable(item)


def _encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StrictJSONError("string holds an unpaired surrogate (\\ud800-\\udfff)") from None
