"""C2SP tlog-tiles: tile paths, tile contents and entry bundles (height 8, width 256)."""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence

from strongroom.ledger.errors import LedgerError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_PATH = re.compile(r"^(?:x\d{3}/)*\d{3}$")


def encode_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067``."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def decode_index(text: str) -> int:
    if not _PATH.match(text):
        raise LedgerError(f"malformed tile index {text!r}")
    return int("".join(part.lstrip("x") for part in text.split("/")))


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/entries/{encode_index(index)}{suffix}"


def parse_tile_request(rest: str) -> tuple[int, int]:
    """Split ``<N>[.p/<W>]`` into (index, width); raises LedgerError if malformed."""
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, width_text = rest.split(".p/", 1)
        if not width_text.isdigit() or not 1 <= int(width_text) < TILE_WIDTH or width_text.startswith("0"):
            raise LedgerError(f"malformed partial tile width {width_text!r}")
        width = int(width_text)
    return decode_index(rest), width


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise LedgerError("entry longer than 65535 bytes cannot be bundled")
        out += struct.pack(">H", len(entry)) + entry
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    entries, offset = [], 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise LedgerError("truncated entry bundle")
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        if offset + 2 + length > len(data):
            raise LedgerError("truncated entry bundle")
        entries.append(data[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return entries
