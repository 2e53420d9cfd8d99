"""Sealed loads onto an accelerator: decrypt into pinned host staging buffers, copy on a side stream.

The plaintext region is cut at segment boundaries into chunks. Two staging buffers alternate: while the
copy engine moves chunk *i* to the device (``non_blocking`` on a dedicated CUDA stream, which needs pinned
host memory to be truly asynchronous), the CPU threads decrypt chunk *i+1* into the other buffer. Before a
buffer is reused, the event recorded after its last copy is waited on. At the end the caller's current
stream is made to wait for the copy stream, and the staging buffers are zeroed.

On a CPU ``device`` the same schedule runs with synchronous copies (this is how the path is tested here;
it has not yet run against a GPU). Plaintext exists only in the staging buffers and the device buffer.
"""

from __future__ import annotations

from typing import Any

from strongroom.seal.reader import SealedFile


def chunk_bounds(sealed: SealedFile, start: int, end: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """Split plaintext [start, end) into chunks whose inner edges fall on segment boundaries."""
    layout = sealed.layout
    if start >= end:
        return []
    per = max(1, chunk_bytes // layout.plaintext_per_segment)
    first, last = layout.segment_of(start), layout.segment_of(end - 1)
    bounds = []
    seg = first
    while seg <= last:
        nxt = min(last + 1, seg + per)
        lo = max(start, layout.plaintext_start(seg))
        hi = end if nxt > last else layout.plaintext_start(nxt)
        bounds.append((lo, hi))
        seg = nxt
    return bounds


def stage_to_device(
    sealed: SealedFile, start: int, end: int, device: str, *, chunk_bytes: int, threads: int = 1
) -> Any:
    """Plaintext [start, end) of ``sealed`` as one uint8 torch tensor on ``device``."""
    import torch

    dev = torch.device(device)
    target = torch.empty(end - start, dtype=torch.uint8, device=dev)
    chunks = chunk_bounds(sealed, start, end, chunk_bytes)
    if not chunks:
        return target
    cuda = dev.type == "cuda"
    size = max(hi - lo for lo, hi in chunks)
    staging = [torch.empty(size, dtype=torch.uint8, pin_memory=cuda) for _ in range(min(2, len(chunks)))]
    events: list[Any] = [None] * len(staging)
    stream = torch.cuda.Stream(device=dev) if cuda else None  # type: ignore[no-untyped-call]
    try:
        for i, (lo, hi) in enumerate(chunks):
            slot = i % len(staging)
            if events[slot] is not None:
                events[slot].synchronize()  # the copy out of this buffer has finished
            host = staging[slot][: hi - lo]
            view: Any = host.numpy()
            sealed.read_into(lo, hi, memoryview(view).cast("B"), threads=threads)
            if stream is not None:
                with torch.cuda.stream(stream):
                    target[lo - start : hi - start].copy_(host, non_blocking=True)
                    event = torch.cuda.Event()  # type: ignore[no-untyped-call]
                    event.record(stream)
                    events[slot] = event
            else:
                target[lo - start : hi - start].copy_(host)
        if stream is not None:
            stream.synchronize()
            torch.cuda.current_stream(dev).wait_stream(stream)
    finally:
        if stream is not None:
            stream.synchronize()
        for buffer in staging:
            buffer.zero_()
    return target
