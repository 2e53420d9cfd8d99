"""Streaming digests of files, byte ranges and buffers: BLAKE3 (default) or SHA-256, written ``alg:hex``.

Files are hashed through a read-only memory map, slice by slice, so a 100 GB model needs no more than
page cache (clean, reclaimable pages) and never a private copy of its bytes.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable
from typing import Literal, Protocol

import blake3

from strongroom.manifest.errors import ModelPathError, UnsupportedAlgorithmError

Algorithm = Literal["blake3", "sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("blake3", "sha256")
# Hash types a model-signing statement may carry that Strongroom can check.
OMS_ALGORITHMS = ("sha256", "blake3", "blake2b")
CHUNK = 16 << 20
BIG_RANGE = 64 << 20  # BLAKE3 hashes ranges at least this long with all cores


class Hasher(Protocol):
    def update(self, data: memoryview | bytes, /) -> object: ...

    def digest(self) -> bytes: ...


def new_hasher(algorithm: str, size_hint: int = 0) -> Hasher:
    """A fresh incremental hasher; BLAKE3 goes multi-threaded for long inputs."""
    if algorithm == "blake3":
        threads = blake3.blake3.AUTO if size_hint >= BIG_RANGE else 1
        hasher: Hasher = blake3.blake3(max_threads=threads)
        return hasher
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b()
    raise UnsupportedAlgorithmError(f"unsupported digest algorithm {algorithm!r} (blake3 or sha256)")


def check_algorithm(algorithm: str) -> Algorithm:
    if algorithm == "blake3":
        return "blake3"
    if algorithm == "sha256":
        return "sha256"
    raise UnsupportedAlgorithmError(f"unsupported digest algorithm {algorithm!r} (blake3 or sha256)")


def hash_view(algorithm: str, view: memoryview | bytes) -> str:
    """Hex digest of an in-memory buffer, fed in chunks (hashlib and blake3 release the GIL)."""
    hasher = new_hasher(algorithm, len(view))
    mv = memoryview(view).cast("B")
    for offset in range(0, len(mv), CHUNK):
        hasher.update(mv[offset : offset + CHUNK])
    return hasher.digest().hex()


def open_nofollow(path: str | os.PathLike[str], display: str) -> int:
    """Open a regular file read-only without following a final symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelPathError(f"{display}: cannot open: {exc.strerror}") from None
    return fd


class MappedFile:
    """A read-only memory map of one file (empty files get an empty view)."""

    def __init__(self, path: str | os.PathLike[str], display: str) -> None:
        fd = open_nofollow(path, display)
        try:
            self.size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, self.size, access=mmap.ACCESS_READ) if self.size else None
        finally:
            os.close(fd)
        self.view = memoryview(self._map) if self._map is not None else memoryview(b"")

    def read(self, start: int, end: int) -> bytes:
        return bytes(self.view[start:end])

    def close(self) -> None:
        self.view.release()
        if self._map is not None:
            self._map.close()

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hash_range(mapped: MappedFile, start: int, end: int, algorithm: str) -> str:
    """Hex digest of bytes [start, end) of a mapped file."""
    view = mapped.view[start:end]
    try:
        return hash_view(algorithm, view)
    finally:
        view.release()


def hash_reader(read_into: Callable[[int, int, memoryview], None], start: int, end: int, algorithm: str) -> str:
    """Hex digest of [start, end) pulled through ``read_into`` in bounded chunks (for sealed files)."""
    return hash_reader_multi(read_into, start, end, (algorithm,))[0]


def hash_reader_multi(
    read_into: Callable[[int, int, memoryview], None], start: int, end: int, algorithms: tuple[str, ...]
) -> list[str]:
    """Hex digests of [start, end) in each of ``algorithms``, every chunk read (decrypted) once."""
    hashers = [new_hasher(a, end - start) for a in algorithms]
    buffer = bytearray(min(CHUNK, max(0, end - start)))
    view = memoryview(buffer)
    position = start
    while position < end:
        stop = min(end, position + CHUNK)
        part = view[: stop - position]
        read_into(position, stop, part)
        for hasher in hashers:
            hasher.update(part)
        position = stop
    return [h.digest().hex() for h in hashers]
