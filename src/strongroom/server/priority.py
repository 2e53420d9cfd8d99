"""Releases first: a gate that keeps request and approval bookkeeping off the CPU while a key release runs.

A key release is the step a person waits on. Under load it would otherwise share the interpreter (one
GIL, two cores here) with dozens of bookkeeping threads and queue behind them at every switch. The gate
admits either releases (any number at once) or bookkeeping (up to the pool's size), never both; waiting
releases go first, and bookkeeping that has waited ``max_wait`` seconds goes in anyway so a stream of
releases cannot starve it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class ReleaseFirstGate:
    """Two classes of work that never overlap; the urgent class (releases) is preferred."""

    def __init__(self, max_wait: float = 2.0) -> None:
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._urgent_waiting = 0
        self._urgent_active = 0
        self._ordinary_active = 0
        self._overdue = 0  # ordinary waiters past max_wait; urgent work waits for them

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        with self._cond:
            self._urgent_waiting += 1
            try:
                while self._ordinary_active or self._overdue:
                    self._cond.wait()
            finally:
                self._urgent_waiting -= 1
            self._urgent_active += 1
        try:
            yield
        finally:
            with self._cond:
                self._urgent_active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def ordinary(self) -> Iterator[None]:
        deadline = time.monotonic() + self.max_wait
        overdue = False
        with self._cond:
            try:
                while self._urgent_active or (self._urgent_waiting and not overdue):
                    left = deadline - time.monotonic()
                    if left <= 0 and not overdue:
                        overdue = True
                        self._overdue += 1
                        continue
                    self._cond.wait(None if overdue else left)
            finally:
                if overdue:
                    self._overdue -= 1
            self._ordinary_active += 1
        try:
            yield
        finally:
            with self._cond:
                self._ordinary_active -= 1
                self._cond.notify_all()
