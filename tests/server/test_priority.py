"""The release-first gate: bookkeeping never overlaps a release, releases go first, nobody starves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from strongroom.server.priority import ReleaseFirstGate


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_bookkeeping_waits_for_a_release_and_releases_overlap() -> None:
    gate = ReleaseFirstGate(max_wait=10)
    events: list[str] = []
    release_inside = threading.Event()
    finish_release = threading.Event()

    def release() -> None:
        with gate.urgent():
            events.append("release in")
            release_inside.set()
            finish_release.wait(5)
            events.append("release out")

    def bookkeeping() -> None:
        with gate.ordinary():
            events.append("bookkeeping")

    first = in_thread(release)
    release_inside.wait(5)
    waiting = in_thread(bookkeeping)
    with gate.urgent():  # a second release is not held up by the first
        events.append("second release")
    time.sleep(0.05)
    assert "bookkeeping" not in events
    finish_release.set()
    for thread in (first, waiting):
        thread.join(5)
    assert events == ["release in", "second release", "release out", "bookkeeping"]


def test_a_waiting_release_goes_before_waiting_bookkeeping() -> None:
    gate = ReleaseFirstGate(max_wait=10)
    order: list[str] = []
    bookkeeping_inside = threading.Event()
    finish_bookkeeping = threading.Event()

    def long_bookkeeping() -> None:
        with gate.ordinary():
            bookkeeping_inside.set()
            finish_bookkeeping.wait(5)
            order.append("first bookkeeping")

    def release() -> None:
        with gate.urgent():
            order.append("release")

    def more_bookkeeping() -> None:
        with gate.ordinary():
            order.append("later bookkeeping")

    holder = in_thread(long_bookkeeping)
    bookkeeping_inside.wait(5)
    releaser = in_thread(release)
    time.sleep(0.05)  # the release is now waiting for the bookkeeping in progress
    later = in_thread(more_bookkeeping)
    time.sleep(0.05)
    assert order == []
    finish_bookkeeping.set()
    for thread in (holder, releaser, later):
        thread.join(5)
    assert order == ["first bookkeeping", "release", "later bookkeeping"]


def test_bookkeeping_is_not_starved_by_a_stream_of_releases() -> None:
    gate = ReleaseFirstGate(max_wait=0.1)
    stop = threading.Event()

    def stream_of_releases() -> None:
        while not stop.is_set():
            with gate.urgent():
                time.sleep(0.005)

    streams = [in_thread(stream_of_releases) for _ in range(3)]  # overlapping: never a moment without one
    time.sleep(0.02)
    start = time.monotonic()
    with gate.ordinary():
        waited = time.monotonic() - start
    stop.set()
    for thread in streams:
        thread.join(5)
    assert waited < 2.0  # it got in although a release was running at every moment
