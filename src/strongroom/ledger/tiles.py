"""C2SP tlog-tiles: tile paths, tile contents and entry bundles (height 8, width 256)."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence

from strongroom.ledger.errors import LedgerError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
# ASCII digits only (``\d`` and ``str.isdigit`` accept '²' and other Unicode digits, which int() refuses);
# at most seven groups: indices below 10^21, beyond any 64-bit tree size.
_PATH = re.compile(r"(?:x[0-9]{3}/){0,6}[0-9]{3}")
_LEVEL = re.compile(r"[0-9]{1,2}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


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
    if not _PATH.fullmatch(text):
        raise LedgerError(f"malformed tile index {text[:40]!r}")
    return int("".join(part.lstrip("x") for part in text.split("/")))


def parse_level(text: str) -> int:
    """A tile level: ASCII decimal, 0 to 63."""
    if not _LEVEL.fullmatch(text) or int(text) > MAX_LEVEL:
        raise LedgerError(f"malformed tile level {text[:40]!r}")
    return int(text)


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
        if not _WIDTH.fullmatch(width_text) or not 1 <= int(width_text) < TILE_WIDTH:
            raise LedgerError(f"malformed partial tile width {width_text[:40]!r}")
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


def unbundle(data: bytes, max_entries: int | None = None) -> list[bytes]:
    """The entries of a bundle; LedgerError if it is truncated or holds more than ``max_entries``."""
    reader = BundleReader(max_entries)
    entries = list(reader.feed(data))
    reader.finish()
    return entries


class BundleReader:
    """Splits an entry bundle into entries as its bytes arrive, so a reader can judge (and refuse) each entry
    before the rest of the bundle is read. Raises LedgerError past ``max_entries`` or on a truncated end."""

    def __init__(self, max_entries: int | None = None) -> None:
        self.max_entries = max_entries
        self.count = 0
        self._buffer = bytearray()
        self._offset = 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Take ``chunk``; iterate the result for the entries now complete, one at a time (a caller that stops
        early, to refuse the bundle, has copied out no more than the entries it looked at)."""
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += chunk
        return self._complete()

    def _complete(self) -> Iterator[bytes]:
        buffer = self._buffer
        while len(buffer) - self._offset >= 2:
            start = self._offset
            length = (buffer[start] << 8) | buffer[start + 1]
            if len(buffer) - start - 2 < length:
                break
            self.count += 1
            if self.max_entries is not None and self.count > self.max_entries:
                raise LedgerError(f"entry bundle holds more than {self.max_entries} entries")
            self._offset = start + 2 + length
            yield bytes(buffer[start + 2 : start + 2 + length])

    def finish(self) -> None:
        """Raise if bytes are left over that do not make a whole entry."""
        if len(self._buffer) > self._offset:
            raise LedgerError("truncated entry bundle")
