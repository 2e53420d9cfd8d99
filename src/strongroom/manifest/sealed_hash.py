"""Hash the tensors of a sealed safetensors file while decrypting it, window by window, in parallel.

Workers take contiguous runs of whole tensors; each decrypts its run in segment-aligned windows (into a
small reusable buffer, or straight into the caller's output buffer when loading) and hashes each window
while it is still in cache. Memory stays bounded by ``threads x window`` unless the caller asked for the
whole plaintext.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from strongroom.manifest.digest import Hasher, new_hasher
from strongroom.seal.reader import Prefault, SealedFile
from strongroom.seal.safetensors_header import TensorInfo

WINDOW = 16 << 20


def split_runs(tensors: list[TensorInfo], parts: int) -> list[list[TensorInfo]]:
    """Split tensors (in file order) into at most ``parts`` contiguous runs of similar byte size."""
    total = sum(t.nbytes for t in tensors)
    runs: list[list[TensorInfo]] = [[] for _ in range(max(1, parts))]
    acc = 0
    for t in tensors:
        index = min(len(runs) - 1, (acc * len(runs)) // total) if total else 0
        runs[index].append(t)
        acc += t.nbytes
    return [r for r in runs if r]


def _window_end(sealed: SealedFile, position: int, limit: int, window: int) -> int:
    """The end of the window starting at ``position``: a segment boundary near position + window."""
    layout = sealed.layout
    target = min(limit, position + window)
    if target >= limit:
        return limit
    boundary = layout.plaintext_range(layout.segment_of(target))[0]
    return boundary if boundary > position else min(limit, layout.plaintext_range(layout.segment_of(target))[1])


def hash_sealed_tensors(
    sealed: SealedFile,
    tensors: list[TensorInfo],
    algorithm: str,
    *,
    threads: int,
    out: memoryview | None = None,
    out_base: int = 0,
    whole: Hasher | None = None,
    window: int = WINDOW,
    prefault: Prefault | None = None,
) -> dict[str, str]:
    """Digest of every tensor (name -> hex), decrypting each byte exactly once.

    ``out``: a buffer holding plaintext bytes [out_base, out_base + len) to decrypt into (for loading).
    ``whole``: a hasher to feed every tensor byte in file order as well (forces one worker).
    ``prefault``: called with ``out``-relative ranges just before each is decrypted into (``seal.buffers``).
    """
    ordered = sorted(tensors, key=lambda t: (t.start, t.end))
    digests: dict[str, str] = {}
    for t in ordered:
        if t.nbytes == 0:
            digests[t.name] = new_hasher(algorithm).digest().hex()
    ordered = [t for t in ordered if t.nbytes]
    if not ordered:
        return digests
    runs = [ordered] if whole is not None else split_runs(ordered, threads)
    results: list[dict[str, str]] = []
    # One worker per run already fills the cores: only a lone run lets BLAKE3 use its own threads.
    hint: Callable[[TensorInfo], int] = (lambda t: t.nbytes) if len(runs) == 1 else (lambda t: 0)
    # The whole-file digest (SHA-256 for OMS) is the slowest: it runs on its own thread beside the tensor
    # digests, on the same window, and is waited for before that window is overwritten.
    whole_pool = ThreadPoolExecutor(1) if whole is not None else None

    def work(run: list[TensorInfo]) -> dict[str, str]:
        found: dict[str, str] = {}
        lo, hi = run[0].start, run[-1].end
        scratch: memoryview | None = None if out is not None else memoryview(bytearray(min(window * 2, hi - lo)))
        index = 0
        hasher: Any = new_hasher(algorithm, hint(run[0]))
        position = lo
        while position < hi:
            stop = _window_end(sealed, position, hi, window)
            if out is not None:
                target = out[position - out_base : stop - out_base]
            else:
                assert scratch is not None
                if len(scratch) < stop - position:
                    scratch = memoryview(bytearray(stop - position))
                target = scratch[: stop - position]
            if out is not None and prefault is not None:
                prefault(position - out_base, stop - out_base)
            sealed.read_into(position, stop, target, threads=1)
            pending = whole_pool.submit(whole.update, target) if whole is not None and whole_pool else None
            cursor = position
            while cursor < stop:
                tensor = run[index]
                upto = min(tensor.end, stop)
                hasher.update(target[cursor - position : upto - position])
                cursor = upto
                if upto == tensor.end:
                    found[tensor.name] = hasher.digest().hex()
                    index += 1
                    if index < len(run):
                        hasher = new_hasher(algorithm, hint(run[index]))
            if pending is not None:
                pending.result()
            position = stop
        return found

    if len(runs) == 1:
        try:
            results.append(work(runs[0]))
        finally:
            if whole_pool is not None:
                whole_pool.shutdown()
    else:
        with ThreadPoolExecutor(len(runs)) as pool:
            results.extend(pool.map(work, runs))
    for found in results:
        digests.update(found)
    return digests
