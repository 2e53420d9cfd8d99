"""Best-effort hygiene for secrets held in Python memory: keys live in bytearrays that are wiped after use."""

from __future__ import annotations

import ctypes


def wipe(buffer: bytearray | memoryview) -> None:
    """Overwrite a mutable buffer with zeros in place (the copy OpenSSL keeps is beyond our reach)."""
    view = memoryview(buffer).cast("B")
    if view.nbytes == 0:
        return
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    ctypes.memset(address, 0, view.nbytes)
