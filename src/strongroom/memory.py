"""Best-effort hygiene for secrets held in Python memory: keys live in bytearrays that are wiped after use."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


def wipe(buffer: bytearray | memoryview) -> None:
    """Overwrite a mutable buffer with zeros in place (the copy OpenSSL keeps is beyond our reach)."""
    view = memoryview(buffer).cast("B")
    if view.nbytes == 0:
        return
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    ctypes.memset(address, 0, view.nbytes)


def lock(buffer: bytearray) -> bool:
    """Keep a key's pages out of swap (mlock(2)) where the memory-lock limit allows; False if refused."""
    if not buffer:
        return False
    c = libc()
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return c is not None and c.mlock(ctypes.c_void_p(address), ctypes.c_size_t(len(buffer))) == 0


def unlock(buffer: bytearray) -> None:
    """Undo ``lock`` (call after ``wipe``)."""
    c = libc()
    if buffer and c is not None:
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        c.munlock(ctypes.c_void_p(address), ctypes.c_size_t(len(buffer)))


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, for the few calls Python does not wrap (mlock, prctl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None
