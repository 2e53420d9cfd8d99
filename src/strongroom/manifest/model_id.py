"""The model id: a BLAKE3 Merkle root over one canonical record per file and per tensor.

Records are canonical JSON (RFC 8785) objects, sorted by their bytes:

* ``{"kind": "file", "name": <posix path>, "size": <int>, "covers": "content" | "safetensors-header",
  "algorithm": "blake3", "digest": <hex>}``: the whole file, or for safetensors its first 8 + N bytes
  (length prefix and JSON header, exactly as stored);
* ``{"kind": "tensor", "file": <posix path>, "name": <tensor>, "dtype": <str>, "shape": [..],
  "offsets": [begin, end], "algorithm": "blake3", "digest": <hex of the tensor's bytes>}``.

The tree hashes leaves as BLAKE3(0x00 || record) and nodes as BLAKE3(0x01 || left || right), splitting as
RFC 9162 does; an empty model hashes to BLAKE3(""). The id commits to every name, dtype, shape and byte,
so renaming or swapping files or tensors changes it, unlike a hash over sorted digests alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import blake3

from strongroom.canonical_json import canonical_json


def _leaf(record: bytes) -> bytes:
    return blake3.blake3(b"\x00" + record).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return blake3.blake3(b"").digest()
    level = list(leaves)
    # Iterative RFC 9162 shape: combine the largest power-of-two prefix recursively.
    return _root(level)


def _root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def model_id(records: Sequence[dict[str, Any]]) -> str:
    encoded = sorted(canonical_json(r) for r in records)
    return "blake3:" + merkle_root([_leaf(r) for r in encoded]).hex()
