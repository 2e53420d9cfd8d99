"""A safetensors file's identity parts: raw header bytes, canonical (RFC 8785) header, tensor ranges."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.manifest.digest import hash_view
from strongroom.manifest.errors import MalformedHeaderError
from strongroom.seal.errors import NotSafetensorsError
from strongroom.seal.safetensors_header import SafetensorsHeader, TensorInfo, parse_safetensors_header


@dataclass(frozen=True)
class HeaderDigests:
    """A parsed header with the digests of its raw bytes (length prefix included) and of its canonical form."""

    header: SafetensorsHeader
    header_digest: str
    canonical_header_digest: str

    @property
    def data_start(self) -> int:
        return self.header.data_start

    def tensors_in_order(self) -> list[TensorInfo]:
        return sorted(self.header.tensors.values(), key=lambda t: (t.start, t.end))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedHeaderError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_header(read: Callable[[int, int], bytes], size: int, file: str, algorithm: str) -> HeaderDigests:
    """Parse and validate the header through ``read(start, end)``, and digest its two forms.

    Duplicate JSON keys are refused: two parsers could pick different values for them.
    """
    try:
        header = parse_safetensors_header(read, size, file)
    except NotSafetensorsError as exc:
        raise MalformedHeaderError(str(exc)) from None
    raw = read(0, header.data_start)
    try:
        value = json.loads(raw[8:], object_pairs_hook=_no_duplicates)
        canonical = canonical_json(value)
    except MalformedHeaderError as exc:
        raise MalformedHeaderError(f"{file}: safetensors header has a {exc}") from None
    except (ValueError, TypeError) as exc:
        raise MalformedHeaderError(f"{file}: safetensors header cannot be canonicalised: {exc}") from None
    return HeaderDigests(header, hash_view(algorithm, raw), hash_view(algorithm, canonical))
