"""Random-access decryption of one sealed file, in parallel, straight into caller-owned buffers."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from strongroom.memory import wipe
from strongroom.seal.errors import (
    SealedFormatError,
    SegmentAuthError,
    TrailingDataError,
    TruncatedError,
)
from strongroom.seal.header import PREFIX, SealedHeader, split_prefix
from strongroom.seal.stream import HEADER_BYTES, TAG_BYTES, SegmentCipher, StreamLayout

BATCH_BYTES = 1 << 20  # one batch stays in L2 between the read and the decryption (measured: 8 MiB slower)

Prefault = Callable[[int, int], None]
"""Called with an ``out``-relative byte range just before a batch is decrypted into it."""


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class SealedFile:
    """An open sealed file: its header is readable at once, its plaintext once a data key is given."""

    def __init__(self, path: Path, display: str | None = None) -> None:
        self.path = Path(path)
        self.display = display or str(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except IsADirectoryError:
            raise SealedFormatError(f"{self.display}: is a directory, not a sealed file") from None
        except OSError as exc:
            raise SealedFormatError(f"{self.display}: cannot open: {exc.strerror}") from None
        self._cipher: SegmentCipher | None = None
        self._cached: tuple[int, bytearray] | None = None  # the last segment a small read() decrypted
        try:
            self.header, self.prefix = self._read_header()
            self.layout: StreamLayout = self.header.layout
            self.stream_offset = len(self.prefix)
            self._check_length()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> tuple[SealedHeader, bytes]:
        head = os.pread(self._fd, PREFIX.size, 0)
        length = split_prefix(head, self.display)
        body = os.pread(self._fd, length, PREFIX.size)
        if len(body) != length:
            raise TruncatedError(f"{self.display}: truncated inside the sealed header")
        return SealedHeader.decode(body, self.display), head + body

    def _check_length(self) -> None:
        expected = len(self.prefix) + self.layout.ciphertext_length
        actual = os.fstat(self._fd).st_size
        if actual < expected:
            raise TruncatedError(f"{self.display}: truncated: {actual} bytes, the header promises {expected}")
        if actual > expected:
            raise TrailingDataError(f"{self.display}: {actual - expected} unexpected bytes after the last segment")

    def unlock(self, data_key: bytes | bytearray, ciphers: dict[bytes, SegmentCipher] | None = None) -> None:
        """Check the key commitment and derive the segment key; the data key itself is not kept.

        ``ciphers``: a cache, for one data key only, of segment ciphers by (outer header || stream header).
        Equal bytes there mean the same seal id, key commitment and salt, so the commitment check and the
        derivation would repeat exactly; a cached entry exists only after both succeeded.
        """
        stream_header = os.pread(self._fd, HEADER_BYTES, self.stream_offset)
        key = self.prefix + stream_header
        if ciphers is not None and key in ciphers:
            self._cipher = ciphers[key]
            return
        self.header.check_key(data_key, self.display)
        try:
            self._cipher = SegmentCipher(data_key, stream_header, self.prefix)
        except ValueError:
            raise SealedFormatError(f"{self.display}: malformed stream header") from None
        if ciphers is not None:
            ciphers[key] = self._cipher

    @property
    def plaintext_length(self) -> int:
        return self.layout.plaintext_length

    def segment_span(self, start: int, end: int) -> tuple[int, int]:
        """The plaintext range of the whole segments that hold bytes [start, end)."""
        if start >= end:
            return start, end
        first = self.layout.segment_of(start)
        last = self.layout.segment_of(end - 1)
        return self.layout.plaintext_start(first), self.layout.plaintext_range(last)[1]

    def read(self, start: int, end: int) -> bytes:
        """Decrypt plaintext bytes [start, end) and return them.

        A range inside one segment is served from that segment, decrypted once and kept until the next
        such segment or ``close`` (headers are read in a few small pieces from segment 0).
        """
        if 0 <= start < end <= self.layout.plaintext_length:
            seg = self.layout.segment_of(start)
            lo, hi = self.layout.plaintext_range(seg)
            if end <= hi:
                if self._cached is None or self._cached[0] != seg:
                    self._drop_cache()
                    plain = bytearray(hi - lo)
                    self.read_into(lo, hi, memoryview(plain))
                    self._cached = (seg, plain)
                return bytes(self._cached[1][start - lo : end - lo])
        out = bytearray(end - start)
        self.read_into(start, end, memoryview(out))
        return bytes(out)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            wipe(self._cached[1])
            self._cached = None

    def read_into(
        self,
        start: int,
        end: int,
        out: memoryview,
        threads: int = 1,
        prefault: Prefault | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """Decrypt plaintext bytes [start, end) into ``out`` (exactly end - start bytes long).

        With ``threads`` > 1 each thread takes a contiguous run of segments; ``prefault`` (if given) lets
        each thread populate the pages of its next batch just before it decrypts into them. ``executor``:
        a caller's long-lived pool (at least ``threads`` workers, never one this call runs on) to save
        starting threads for each small read.
        """
        if not 0 <= start <= end <= self.layout.plaintext_length:
            raise ValueError(f"{self.display}: range [{start}, {end}) outside the plaintext")
        if out.nbytes != end - start:
            raise ValueError("output buffer has the wrong size")
        if start == end and self.layout.plaintext_length != 0:
            return
        first = self.layout.segment_of(start)
        last = self.layout.segment_of(max(start, end - 1))
        count = last - first + 1
        workers = max(1, min(threads, count))
        if workers == 1:
            self._decrypt_segments(first, last + 1, start, end, out, prefault)
            return
        bounds = [first + (count * i) // workers for i in range(workers + 1)]
        pool = executor or ThreadPoolExecutor(workers)
        try:
            futures = [
                pool.submit(self._decrypt_segments, bounds[i], bounds[i + 1], start, end, out, prefault)
                for i in range(workers)
            ]
            for future in futures:
                future.result()
        finally:
            if executor is None:
                pool.shutdown()

    def _decrypt_segments(
        self, lo: int, hi: int, start: int, end: int, out: memoryview, prefault: Prefault | None = None
    ) -> None:
        """Decrypt segments [lo, hi), keeping the parts that fall inside [start, end)."""
        cipher = self._cipher
        if cipher is None:
            raise SealedFormatError(f"{self.display}: no data key given (call unlock first)")
        layout = self.layout
        final = layout.segment_count - 1
        seg_cipher = layout.segment_size
        per_batch = max(1, BATCH_BYTES // seg_cipher)
        cbuf = bytearray(min(hi - lo, per_batch) * seg_cipher)
        cview = memoryview(cbuf)
        scratch: memoryview | None = None
        index = lo
        while index < hi:
            batch_end = min(hi, index + per_batch)
            c_lo = self.stream_offset + layout.ciphertext_start(index)
            p_hi_last = layout.plaintext_range(batch_end - 1)[1]
            c_hi = (
                self.stream_offset
                + layout.ciphertext_start(batch_end - 1)
                + (p_hi_last - layout.plaintext_start(batch_end - 1))
                + TAG_BYTES
            )
            if prefault is not None:
                p_lo = max(start, layout.plaintext_start(index))
                prefault(p_lo - start, min(end, p_hi_last) - start)
            got = os.preadv(self._fd, [cview[: c_hi - c_lo]], c_lo)
            if got != c_hi - c_lo:
                raise TruncatedError(f"{self.display}: short read at segment {index}")
            for seg in range(index, batch_end):
                p_lo, p_hi = layout.plaintext_range(seg)
                rel = self.stream_offset + layout.ciphertext_start(seg) - c_lo
                ciphertext = cview[rel : rel + (p_hi - p_lo) + TAG_BYTES]
                if start <= p_lo and p_hi <= end:
                    target = out[p_lo - start : p_hi - start]
                    ok = cipher.decrypt_into(seg, seg == final, ciphertext, target)
                else:
                    if scratch is None:
                        scratch = memoryview(bytearray(layout.plaintext_per_segment))
                    ok = cipher.decrypt_into(seg, seg == final, ciphertext, scratch[: p_hi - p_lo])
                    if ok:
                        lo_cut, hi_cut = max(start, p_lo), min(end, p_hi)
                        out[lo_cut - start : hi_cut - start] = scratch[lo_cut - p_lo : hi_cut - p_lo]
                if not ok:
                    raise SegmentAuthError(self.display, seg)
            index = batch_end

    def close(self) -> None:
        self._drop_cache()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cipher = None

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            os.close(fd)
