"""One read pass per file for two kinds of digest: a whole-file digest (the OMS resource, SHA-256 by default)
and Strongroom's digests of byte ranges of the same file (the raw safetensors header and every tensor, or the
whole of any other file, BLAKE3 by default).

Each file is read once, window by window, into a private buffer. The whole-file hasher runs on the file's own
thread while a helper thread hashes the window's ranges, then both wait before the next window is read: every
digest of a file comes from the same bytes, read from disk once, and a file that shrinks or grows while it is
hashed is an error rather than a half-hashed file. A whole-file hash is sequential, so it sets the pace of each
file; files are hashed side by side, one per thread, with a helper each for the ranges.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

from strongroom.manifest.digest import Hasher, new_hasher, open_nofollow
from strongroom.manifest.errors import ModelPathError

WINDOW = 2 << 20  # about a core's L2 cache here; measured best of 1-8 MiB (the second hasher reads it hot)
INLINE = 256 << 10  # windows this short are hashed on the file's thread (a hand-off costs more)


@dataclass(frozen=True)
class Span:
    """A byte range [start, end) of a file to digest on its own, named by ``key``."""

    key: Hashable
    start: int
    end: int


class _Ranges:
    """Feeds each window's bytes to the digest of every span it overlaps, spans in file order."""

    def __init__(self, spans: Sequence[Span], algorithm: str) -> None:
        self.algorithm = algorithm
        self.digests: dict[Hashable, str] = {}
        for span in spans:
            if span.end <= span.start:
                self.digests[span.key] = new_hasher(algorithm).digest().hex()
        self.spans = sorted((s for s in spans if s.end > s.start), key=lambda s: (s.start, s.end))
        for before, after in zip(self.spans, self.spans[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"overlapping spans {before} and {after}")
        self.index = 0
        self.hasher: Hasher | None = None

    def feed(self, view: memoryview, offset: int) -> None:
        """Hash ``view``, the file's bytes [offset, offset + len(view))."""
        stop = offset + len(view)
        while self.index < len(self.spans):
            span = self.spans[self.index]
            if span.start >= stop:
                return
            lo, hi = max(span.start, offset), min(span.end, stop)
            if self.hasher is None:
                self.hasher = new_hasher(self.algorithm)  # one thread each: the whole-file hash keeps the others
            self.hasher.update(view[lo - offset : hi - offset])
            if hi < span.end:
                return
            self.digests[span.key] = self.hasher.digest().hex()
            self.hasher = None
            self.index += 1


def hash_file_once(
    path: Path,
    display: str,
    size: int,
    spans: Sequence[Span],
    algorithm: str,
    whole_algorithm: str | None,
    helper: Executor | None,
    *,
    window: int = WINDOW,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[Hashable, str], str | None]:
    """Digest every span with ``algorithm`` and the whole file with ``whole_algorithm`` (if any), reading
    the ``size`` bytes of ``path`` once. Returns (span key -> hex, whole-file hex or None)."""
    ranges = _Ranges(spans, algorithm)
    whole = new_hasher(whole_algorithm) if whole_algorithm else None
    fd = open_nofollow(path, display)
    try:
        if os.fstat(fd).st_size != size:
            raise ModelPathError(f"{display}: changed while it was being hashed (size)")
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buffer = memoryview(bytearray(min(window, size)))
        position = 0
        while position < size:
            view = buffer[: min(window, size - position)]
            got = os.preadv(fd, [view], position)
            if got != len(view):
                raise ModelPathError(f"{display}: changed while it was being hashed (shorter than {size} bytes)")
            pending: Future[None] | None = None
            if whole is None or helper is None or len(view) < INLINE:
                ranges.feed(view, position)
            else:
                pending = helper.submit(ranges.feed, view, position)
            if whole is not None:
                whole.update(view)
            if pending is not None:
                pending.result()
            position += len(view)
            if progress:
                progress(len(view))
        if os.pread(fd, 1, size) or os.fstat(fd).st_size != size:
            raise ModelPathError(f"{display}: changed while it was being hashed (longer than {size} bytes)")
    finally:
        os.close(fd)
    if ranges.index != len(ranges.spans):
        raise ValueError(f"{display}: spans run past the end of the file")
    return ranges.digests, whole.digest().hex() if whole is not None else None


def locked(progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """``progress`` made safe to call from several threads."""
    if progress is None:
        return None
    lock = threading.Lock()

    def report(n: int) -> None:
        with lock:
            progress(n)

    return report
