"""The memory a sealed load decrypts into: owned anonymous mappings, pre-faulted by the decrypting threads.

A fresh process that loads a model spends most of its time faulting in the pages it writes, not
decrypting (256 MiB here: ~100 ms of 4 KiB faults against ~26 ms of AES-GCM on one core). ``np.empty``
of a large array is advised for transparent huge pages (numpy's ``NUMPY_MADVISE_HUGEPAGE``), and on this
kind of VM fresh huge pages fault in at anywhere from 30 ms to 700 ms per 256 MiB: fast on average,
erratic per load. So the loader maps its own anonymous memory (no huge-page advice) and each decrypting
thread populates the next batch of its range with ``MADV_POPULATE_WRITE`` (Linux 5.14+; one system call
per batch instead of one fault per page) just before decrypting into it, so the faulting runs on every
core alongside the decryption. Where the kernel lacks it the pages simply fault on first write.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Any

import numpy as np

from strongroom.memory import libc

PAGE = mmap.PAGESIZE
MADV_POPULATE_WRITE = 23
_MAP_ANONYMOUS = getattr(mmap, "MAP_ANONYMOUS", 0x20)


def owned_buffer(size: int) -> np.ndarray[Any, Any]:
    """A zero-filled, page-aligned, writable uint8 array on its own anonymous mapping (lazily faulted).

    The mapping lives as long as the array (and any view of it, numpy or torch) does.
    """
    if size == 0:
        return np.empty(0, dtype=np.uint8)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | _MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(mapping, dtype=np.uint8)


class Prefaulter:
    """Populates page ranges of one buffer ahead of writes; a no-op once the kernel refuses."""

    def __init__(self, buffer: np.ndarray[Any, Any]) -> None:
        self._base = int(buffer.ctypes.data)
        self._size = int(buffer.nbytes)
        self._libc = libc()
        self.enabled = self._libc is not None and self._size > 0 and self._base % PAGE == 0

    def populate(self, start: int, end: int) -> None:
        """Fault in the pages under buffer bytes [start, end) for writing (whole pages inside the buffer)."""
        if not self.enabled or end <= start:
            return
        lo = start - start % PAGE
        hi = min(self._size, end + (-end) % PAGE)
        assert self._libc is not None
        if self._libc.madvise(ctypes.c_void_p(self._base + lo), ctypes.c_size_t(hi - lo), MADV_POPULATE_WRITE) != 0:
            self.enabled = False  # old kernel (EINVAL) or not permitted: fall back to faulting on write
