"""The model id: an RFC 9162-shaped Merkle root over sorted leaf records, written ``<algorithm>:<hex>``.

Each leaf is the RFC 8785 canonical JSON of one record (a file, a safetensors file's headers, or a tensor);
leaves are sorted bytewise; leaf hash = H(0x00 || leaf), node hash = H(0x01 || left || right), with the
tree split at the largest power of two below the leaf count (RFC 9162 section 2.1.1). H is BLAKE3
(32-byte output) or SHA-256. Because every leaf names its file, tensor, dtype, shape, algorithm and digest,
renaming or swapping anything changes the id (model-signing's root digest does not commit to names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import blake3

from strongroom.canonical_json import canonical_json
from strongroom.manifest.digest import check_algorithm


def _h(algorithm: str, data: bytes) -> bytes:
    if algorithm == "blake3":
        return blake3.blake3(data).digest()
    return hashlib.sha256(data).digest()


def leaf_bytes(records: Iterable[dict[str, Any]]) -> list[bytes]:
    """Canonical JSON of each leaf record, sorted bytewise (the order the tree is built in)."""
    return sorted(canonical_json(r) for r in records)


def merkle_root(algorithm: str, leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash over already-ordered leaves."""
    if not leaves:
        return _h(algorithm, b"")
    level = [_h(algorithm, b"\x00" + leaf) for leaf in leaves]
    return _subtree(algorithm, level)


def _subtree(algorithm: str, hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    return _h(algorithm, b"\x01" + _subtree(algorithm, hashes[:split]) + _subtree(algorithm, hashes[split:]))


def model_id(algorithm: str, records: Iterable[dict[str, Any]]) -> str:
    """``<algorithm>:<hex root>`` over the given leaf records."""
    check_algorithm(algorithm)
    return f"{algorithm}:{merkle_root(algorithm, leaf_bytes(records)).hex()}"
