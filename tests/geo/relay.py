"""A userspace delay relay: forwards UDP datagrams and TCP streams, holding each for a fixed one-way delay.

This kernel has no netem, so the tests emulate propagation delay here. Run as a program::

    python3 relay.py CONFIG.json

where CONFIG is ``{"routes": [{"listen": [ADDR, PORT], "target": [ADDR, PORT], "delay_ms": D}, ...],
"lifetime_s": S}``. Every datagram or chunk of stream that arrives on a route's listening address is sent on
to its target ``D`` ms after it arrived, and every reply is held ``D`` ms on its way back: a route adds
``2 * D`` to a round trip. The relay only ever adds delay. It prints ``READY`` once every socket is bound
and stops when its standard input closes or after ``lifetime_s`` seconds.

Two threads: one reads every socket as soon as the kernel has data (``selectors``) and stamps the arrival
with ``time.monotonic``; the other sends each held item at its due time, sleeping with a precise timed
wait (timer slack lowered to 1 us) rather than the event loop's millisecond timeouts. Bounds: at most
``MAX_PEERS`` UDP clients and TCP connections, ``MAX_HELD`` items held at once, the lifetime.

Standard library only: it runs in the router namespace without importing Strongroom.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import json
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_PEERS = 4096
MAX_HELD = 100_000
PR_SET_TIMERSLACK = 29


class Scheduler(threading.Thread):
    """Runs each callback at its due time (monotonic seconds), in due order."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="relay-send")
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.cond = threading.Condition()
        self.seq = itertools.count()
        self.stopped = False

    def at(self, due: float, action: Callable[[], None]) -> None:
        with self.cond:
            if len(self.heap) < MAX_HELD:
                heapq.heappush(self.heap, (due, next(self.seq), action))
                self.cond.notify()

    def run(self) -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        while True:
            with self.cond:
                while not self.stopped:
                    if not self.heap:
                        self.cond.wait(0.5)
                        continue
                    wait = self.heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self.cond.wait(wait)
                if self.stopped:
                    return
                _, _, action = heapq.heappop(self.heap)
            with contextlib.suppress(OSError):
                action()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()


def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    sys.setswitchinterval(0.0001)
    scheduler = Scheduler()
    selector = selectors.DefaultSelector()
    peers = 0

    for route in config["routes"]:
        listen, target, delay = tuple(route["listen"]), tuple(route["target"]), float(route["delay_ms"]) / 1000.0
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(listen)
        selector.register(udp, selectors.EVENT_READ, ("udp-listen", udp, target, delay, {}))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(listen)
        tcp.listen(64)
        selector.register(tcp, selectors.EVENT_READ, ("tcp-listen", tcp, target, delay, None))

    def send_udp(sock: socket.socket, data: bytes, addr: Any = None) -> Callable[[], None]:
        return (lambda: sock.sendto(data, addr)) if addr is not None else (lambda: sock.send(data))

    def close_pair(a: socket.socket, b: socket.socket) -> Callable[[], None]:
        def action() -> None:
            for s in (a, b):
                with contextlib.suppress(OSError, KeyError, ValueError):
                    selector.unregister(s)
                with contextlib.suppress(OSError):
                    s.close()

        return action

    scheduler.start()
    stop = threading.Event()

    def watch_stdin() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("READY", flush=True)
    deadline = time.monotonic() + float(config.get("lifetime_s", 300))
    while not stop.is_set() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            kind, sock, target, delay, extra = key.data
            now = time.monotonic()
            try:
                if kind == "udp-listen":
                    data, client = sock.recvfrom(65536)
                    upstream = extra.get(client)
                    if upstream is None:
                        if peers >= MAX_PEERS:
                            continue
                        peers += 1
                        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        upstream.connect(target)
                        extra[client] = upstream
                        selector.register(upstream, selectors.EVENT_READ, ("udp-up", upstream, client, delay, sock))
                    scheduler.at(now + delay, send_udp(upstream, data))
                elif kind == "udp-up":
                    data = sock.recv(65536)
                    scheduler.at(now + delay, send_udp(extra, data, target))  # target holds the client here
                elif kind == "tcp-listen":
                    conn, _ = sock.accept()
                    if peers >= MAX_PEERS:
                        conn.close()
                        continue
                    peers += 1
                    try:
                        upstream = socket.create_connection(target, timeout=5)
                    except OSError:
                        conn.close()
                        continue
                    upstream.settimeout(None)
                    for s in (conn, upstream):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(conn, selectors.EVENT_READ, ("tcp", conn, upstream, delay, None))
                    selector.register(upstream, selectors.EVENT_READ, ("tcp", upstream, conn, delay, None))
                elif kind == "tcp":
                    data = sock.recv(65536)
                    other = target
                    if data:
                        scheduler.at(now + delay, lambda o=other, d=data: o.sendall(d))
                    else:
                        selector.unregister(sock)
                        scheduler.at(now + delay, close_pair(sock, other))
            except OSError:
                with contextlib.suppress(OSError, KeyError, ValueError):
                    if kind in ("tcp", "udp-up"):
                        selector.unregister(sock)
    scheduler.stop()


if __name__ == "__main__":
    main(sys.argv[1])
