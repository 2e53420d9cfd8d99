"""C2SP tlog-checkpoint: the signed statement of a log's size and root hash."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from strongroom.ledger.errors import NoteError
from strongroom.ledger.merkle import HASH_SIZE

# ASCII decimal without leading zeros (str.isdigit accepts '²', which int() refuses); below 10^20.
SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """origin, tree size and root hash (plus optional extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint must have an origin, a size and a root hash line, each ending in newline")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not SIZE.fullmatch(size_text):
            raise NoteError(f"checkpoint size {size_text[:40]!r} is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII text
            raise NoteError("checkpoint root hash is not base64") from None
        if len(root) != HASH_SIZE:
            raise NoteError("checkpoint root hash is not 32 bytes")
        extensions = tuple(lines[3:-1])
        if any(not e for e in extensions):
            raise NoteError("checkpoint has an empty extension line")
        return cls(origin, int(size_text), root, extensions)
