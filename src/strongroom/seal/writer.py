"""Sealing: turn one plaintext file into a sealed file, encrypting segments in parallel."""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from strongroom.atomic import fsync_dir
from strongroom.keys.provider import WrappedKey
from strongroom.memory import wipe
from strongroom.seal.errors import SealError
from strongroom.seal.header import (
    SealedHeader,
    check_binding_matches,
    finish_digest,
    key_commitment,
    plaintext_digest,
    plaintext_hasher,
)
from strongroom.seal.reader import SealedFile, default_threads
from strongroom.seal.safetensors_header import parse_safetensors_header
from strongroom.seal.stream import (
    DEFAULT_SEGMENT_SIZE,
    TAG_BYTES,
    SegmentCipher,
    StreamLayout,
    new_stream_header,
)

Progress = Callable[[int], None]
BATCH_BYTES = 8 << 20
DIGEST_PIECE = 8 << 20  # a re-seal's digest pass decrypts this much at a time (both cores), then hashes it
DECRYPTED_BATCH = 1 << 20  # a re-seal's encrypting pass: decrypt, then encrypt, one cache-sized batch at a time


def content_type_of(fd: int, length: int, name: str) -> str:
    """``safetensors`` for a file named *.safetensors (validated), else ``file``."""
    if not name.endswith(".safetensors"):
        return "file"
    parse_safetensors_header(lambda a, b: os.pread(fd, b - a, a), length, name)
    return "safetensors"


def seal_file(
    src: Path,
    dst: Path,
    *,
    name: str,
    seal_id: str,
    data_key: bytes | bytearray,
    wrapped: WrappedKey,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    threads: int | None = None,
    progress: Progress | None = None,
) -> SealedHeader:
    """Seal ``src`` into ``dst`` atomically; ``name`` is the file's path inside its model directory."""
    check_binding_matches(wrapped, seal_id, str(dst))
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SealError(f"{src}: cannot read: {exc.strerror}") from None
    mapped: mmap.mmap | None = None
    try:
        length = os.fstat(fd).st_size
        content_type = content_type_of(fd, length, name)
        if length:
            mapped = mmap.mmap(fd, length, access=mmap.ACCESS_READ)
        source = memoryview(mapped if mapped is not None else b"")
        try:
            header = SealedHeader(
                name=name,
                seal_id=seal_id,
                key=wrapped,
                segment_size=segment_size,
                plaintext_length=length,
                plaintext_digest=plaintext_digest(data_key, seal_id, source),
                key_commitment=key_commitment(data_key, seal_id),
                content_type=content_type,
            )
            _write_sealed(source, Path(dst), header, data_key, threads or default_threads(), progress)
        finally:
            source.release()
        return header
    finally:
        if mapped is not None:
            mapped.close()
        os.close(fd)


def seal_bytes(
    data: bytes | bytearray | memoryview,
    dst: Path,
    *,
    name: str,
    seal_id: str,
    data_key: bytes | bytearray,
    wrapped: WrappedKey,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    content_type: str = "file",
    threads: int = 1,
    progress: Progress | None = None,
) -> SealedHeader:
    """Seal in-memory plaintext (a transcript, a manifest, a file being re-sealed) into ``dst`` atomically; no
    clear text on disk. ``content_type`` is the type the plaintext was sealed with before (a re-seal)."""
    check_binding_matches(wrapped, seal_id, str(dst))
    source = memoryview(data).cast("B")
    header = SealedHeader(
        name=name,
        seal_id=seal_id,
        key=wrapped,
        segment_size=segment_size,
        plaintext_length=source.nbytes,
        plaintext_digest=plaintext_digest(data_key, seal_id, source),
        key_commitment=key_commitment(data_key, seal_id),
        content_type=content_type,
    )
    _write_sealed(source, Path(dst), header, data_key, threads, progress)
    return header


def seal_decrypted(
    source: SealedFile,
    dst: Path,
    *,
    name: str,
    seal_id: str,
    data_key: bytes | bytearray,
    wrapped: WrappedKey,
    content_type: str,
    threads: int = 1,
    progress: Progress | None = None,
) -> SealedHeader:
    """Seal the plaintext of an open, unlocked sealed file again under ``data_key`` (a re-seal), streaming:
    no buffer the size of the file, no plaintext on disk.

    The new header carries the keyed digest of the whole plaintext and authenticates every segment, so the
    plaintext is decrypted twice: once in large pieces for the digest, once a batch at a time per thread
    into a small buffer that the next batch overwrites, right before it is encrypted. The second pass is as
    authenticated as the first (AES-GCM per segment under the old key); a loader checks the digest again.
    """
    check_binding_matches(wrapped, seal_id, str(dst))
    old = source.header
    length = old.plaintext_length
    hasher = plaintext_hasher(data_key, seal_id)
    piece = bytearray(min(max(length, 1), DIGEST_PIECE))
    view = memoryview(piece)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for lo in range(0, length, len(piece)):
            hi = min(length, lo + len(piece))
            source.read_into(lo, hi, view[: hi - lo], threads, executor=pool)
            hasher.update(view[: hi - lo])
    finally:
        if pool is not None:
            pool.shutdown()
        view.release()
        wipe(piece)
    header = SealedHeader(
        name=name,
        seal_id=seal_id,
        key=wrapped,
        segment_size=old.segment_size,
        plaintext_length=length,
        plaintext_digest=finish_digest(hasher),
        key_commitment=key_commitment(data_key, seal_id),
        content_type=content_type,
    )
    _write_sealed(_Decrypting(source), Path(dst), header, data_key, threads, progress)
    return header


class _Decrypting:
    """A plaintext source that decrypts each batch into the calling thread's own small buffer."""

    def __init__(self, sealed: SealedFile) -> None:
        self.sealed = sealed
        self.nbytes = sealed.header.plaintext_length

    def reader(self, size: int) -> _BatchReader:
        buffer = bytearray(size)
        view = memoryview(buffer)

        def read(lo: int, hi: int) -> memoryview:
            self.sealed.read_into(lo, hi, view[: hi - lo])
            return view[: hi - lo]

        def done() -> None:
            view.release()
            wipe(buffer)

        return read, done


_BatchReader = tuple[Callable[[int, int], memoryview], Callable[[], None]]


def _in_memory(source: memoryview) -> _BatchReader:
    def read(lo: int, hi: int) -> memoryview:
        if source.nbytes < hi:
            raise SealError(f"source changed while sealing (now shorter than byte {hi})")
        return source[lo:hi]

    return read, lambda: None


def _write_sealed(
    source: memoryview | _Decrypting,
    dst: Path,
    header: SealedHeader,
    data_key: bytes | bytearray,
    threads: int,
    progress: Progress | None,
) -> None:
    layout = header.layout
    prefix = header.encode()
    stream_header = new_stream_header()
    cipher = SegmentCipher(data_key, stream_header, prefix)
    out_fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        os.ftruncate(out_fd, len(prefix) + layout.ciphertext_length)
        os.pwrite(out_fd, prefix + stream_header, 0)
        count = layout.segment_count
        workers = max(1, min(threads, count))
        bounds = [(count * i) // workers for i in range(workers + 1)]
        job = _SegmentWriter(source, out_fd, len(prefix), layout, cipher, progress)
        if workers == 1:
            job.run(0, count)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(job.run, bounds[i], bounds[i + 1]) for i in range(workers)]:
                    future.result()
        os.fsync(out_fd)
        os.close(out_fd)
        out_fd = -1
        os.replace(tmp_name, dst)
        fsync_dir(dst.parent)
    except BaseException:
        if out_fd >= 0:
            os.close(out_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


class _SegmentWriter:
    """Encrypts a run of segments: pread plaintext, encrypt_into a batch buffer, pwrite ciphertext."""

    def __init__(
        self,
        source: memoryview | _Decrypting,
        out_fd: int,
        offset: int,
        layout: StreamLayout,
        cipher: SegmentCipher,
        progress: Progress | None,
    ) -> None:
        self.source, self.out_fd, self.offset = source, out_fd, offset
        self.layout, self.cipher, self.progress = layout, cipher, progress

    def run(self, lo: int, hi: int) -> None:
        layout = self.layout
        final = layout.segment_count - 1
        source = self.source
        # decrypted plaintext goes straight to the cipher: batches small enough to stay in cache between the two
        batch_bytes = BATCH_BYTES if isinstance(source, memoryview) else DECRYPTED_BATCH
        per_batch = max(1, batch_bytes // layout.segment_size)
        cbuf = memoryview(bytearray(min(hi - lo, per_batch) * layout.segment_size))
        if isinstance(source, memoryview):
            read, done = _in_memory(source)
        else:
            read, done = source.reader(min(hi - lo, per_batch) * layout.segment_size)
        try:
            index = lo
            while index < hi:
                batch_end = min(hi, index + per_batch)
                p_lo = layout.plaintext_start(index)
                p_hi = layout.plaintext_range(batch_end - 1)[1]
                plain = read(p_lo, p_hi)
                c_lo = layout.ciphertext_start(index)
                written = 0
                for seg in range(index, batch_end):
                    s_lo, s_hi = layout.plaintext_range(seg)
                    size = s_hi - s_lo
                    self.cipher.encrypt_into(
                        seg,
                        seg == final,
                        plain[s_lo - p_lo : s_hi - p_lo],
                        cbuf[written : written + size + TAG_BYTES],
                    )
                    written += size + TAG_BYTES
                if os.pwrite(self.out_fd, cbuf[:written], self.offset + c_lo) != written:
                    raise SealError("short write while sealing")
                if self.progress is not None:
                    self.progress(p_hi - p_lo)
                index = batch_end
        finally:
            done()
