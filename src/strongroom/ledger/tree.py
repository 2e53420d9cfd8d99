"""The in-memory hash tree of a growing log: every complete subtree's hash, updated in O(log n) per leaf."""

from __future__ import annotations

from strongroom.ledger import merkle


class HashTree:
    """levels[l][i] is the hash of leaves [i * 2^l, (i + 1) * 2^l)."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        level = 0
        while len(self.levels[level]) % 2 == 0:
            pair = self.levels[level][-2:]
            if len(self.levels) == level + 1:
                self.levels.append([])
            self.levels[level + 1].append(merkle.node_hash(pair[0], pair[1]))
            level += 1

    def subtree(self, start: int, end: int) -> bytes:
        level = (end - start).bit_length() - 1
        return self.levels[level][start >> level]

    def root(self, size: int | None = None) -> bytes:
        return merkle.range_hash(0, self.size if size is None else size, self.subtree)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(index, size, self.subtree)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(old, new, self.subtree)

    def tile(self, level: int, index: int, width: int) -> bytes:
        """Concatenated hashes at Merkle level 8 * level, positions [256 * index, 256 * index + width)."""
        hashes = self.levels[8 * level] if 8 * level < len(self.levels) else []
        start = index * 256
        return b"".join(hashes[start : start + width])
