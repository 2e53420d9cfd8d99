"""A shared/exclusive lock that orders custody's ledger writes against the state they were decided on.

Releases hold it shared from their decision until their ``key.released`` entry is durable; administrative
changes and load reports hold it exclusively from validation until their entry is durable and applied. So
no change to people, hosts or models can land between a release's decision and its entry, and the auditor,
replaying up to that entry, sees exactly the state the live gate decided on. Waiting writers go first, so a
stream of releases cannot starve an offboarding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StateLock:
    """Many readers or one writer; writers waiting block new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
