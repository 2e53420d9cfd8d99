"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs (generation and verification).

Leaves hash as SHA-256(0x00 || data), interior nodes as SHA-256(0x01 || left || right); the tree over
n leaves splits at the largest power of two smaller than n. Proof generation reads hashes of complete
subtrees through a callback, so the caller can serve them from memory or storage in O(log n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from strongroom.ledger.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]
"""subtree(start, end) -> MTH of leaves [start, end); only asked for ranges that are complete subtrees."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(start: int, end: int, subtree: SubtreeHash) -> bytes:
    """MTH of leaves [start, end) for any range that is a valid RFC 9162 subtree position."""
    if end == start:
        return EMPTY_ROOT
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return subtree(start, end)
    k = split_point(size)
    return node_hash(range_hash(start, start + k, subtree), range_hash(start + k, end, subtree))


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """The reference MTH over a list of leaf hashes (already hashed with ``leaf_hash``)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[0:size]) per RFC 9162 2.1.3.1."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            proof.append(range_hash(start + k, end, subtree))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, subtree))
            start = start + k
    proof.reverse()
    return proof


def consistency_proof(old: int, new: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(old, D[0:new]) per RFC 9162 2.1.4.1."""
    if not 0 <= old <= new:
        raise ProofError(f"cannot prove consistency from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    start, end, complete = 0, new, True
    while True:
        if old == end:
            if not complete:
                proof.append(range_hash(start, end, subtree))
            break
        k = split_point(end - start)
        if old - start <= k:
            proof.append(range_hash(start + k, end, subtree))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, subtree))
            start = start + k
            complete = False
    proof.reverse()
    return proof


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError(f"{what}: every hash must be {HASH_SIZE} bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises ProofError unless ``leaf`` (a leaf hash) is at ``index`` in ``root``."""
    _check_hashes([leaf, root, *proof], "inclusion proof")
    if not 0 <= index < size:
        raise ProofError(f"inclusion proof: index {index} outside tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError(f"inclusion proof for index {index} does not lead to the root of size {size}")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2; raises ProofError unless the tree of size ``old`` is a prefix of size ``new``."""
    _check_hashes([old_root, new_root, *proof], "consistency proof")
    if not 0 <= old <= new:
        raise ProofError(f"consistency proof: old size {old} exceeds new size {new}")
    if old == new:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for tree size {old}")
        return
    if old == 0:
        if proof:
            raise ProofError("consistency proof from an empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError(f"consistency proof from size {old} to {new} does not match the roots")
