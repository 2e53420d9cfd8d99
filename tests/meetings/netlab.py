"""A network of the test's own, to prove egress is stopped without ever sending a packet off the machine.

``probe_net()`` moves the *calling thread* (network namespaces are per thread in Linux) into a fresh
network namespace, owned by the test, holding only ``lo``. On ``lo`` it adds:

- ``REMOTE`` (198.51.100.7, RFC 5737 TEST-NET-2), a non-loopback address with a TCP listener: from the
  guard's point of view it is "off the machine", yet a connection that got through lands in the test's
  own listener instead of on a network;
- the address of every ``nameserver`` in /etc/resolv.conf, with a fake DNS server on UDP port 53 that
  records each query and answers NXDOMAIN at once: a lookup that got through is seen and counted.

Processes started from the thread while inside (the pipeline's speech process, ``ip``, ``setpriv``)
inherit the namespace. On exit the thread returns to its original namespace. Needs root (tests run as
root, as CI does). Every loop here is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
REMOTE = "198.51.100.7"
MAX_EVENTS = 1000  # a listener stops recording (and serving) after this many events


@dataclass
class ProbeNet:
    """The test network: where to aim, and what reached it."""

    remote_port: int
    nameservers: list[str]
    connections: list[tuple[str, int]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def snapshot(self) -> tuple[int, int]:
        """(connections, DNS queries) seen so far."""
        return len(self.connections), len(self.queries)

    def wait_for(self, connections: int, queries: int, timeout: float = 5.0) -> tuple[int, int]:
        """Wait (bounded) until at least the given counts were seen; return what was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (len(self.connections) < connections or len(self.queries) < queries):
            time.sleep(0.02)
        return self.snapshot()


def resolv_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameserver addresses glibc's resolver will query (127.0.0.53 and friends included)."""
    servers = []
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    servers.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
    return servers or ["127.0.0.1"]  # glibc's default when none is configured


def _qname(packet: bytes) -> str:
    labels, offset = [], 12
    while offset < len(packet) and packet[offset] and len(labels) < 128:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode(errors="replace"))
        offset += 1 + length
    return ".".join(labels)


def _nxdomain(query: bytes) -> bytes:
    """A reply to ``query`` (header + question copied) with RCODE 3, no answers."""
    end = 12
    while end < len(query) and query[end]:
        end += 1 + query[end]
    question = query[12 : end + 5]
    return query[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question


def _serve_dns(sock: socket.socket, net: ProbeNet, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set() and len(net.queries) < MAX_EVENTS:
        try:
            packet, peer = sock.recvfrom(4096)
        except TimeoutError:
            continue
        except OSError:
            return
        if len(packet) >= 12:
            net.queries.append(_qname(packet))
            with contextlib.suppress(OSError):
                sock.sendto(_nxdomain(packet), peer)


def _serve_tcp(sock: socket.socket, net: ProbeNet, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set() and len(net.connections) < MAX_EVENTS:
        try:
            conn, peer = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        net.connections.append((peer[0], peer[1]))
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"reached\n")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def probe_net() -> Iterator[ProbeNet]:
    """Enter a test-owned network namespace (this thread only) with a 'remote' listener and fake DNS."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(home)
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) for the test network (tests need root)")
    stop = threading.Event()
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []
    try:
        _ip("link", "set", "lo", "up")
        _ip("addr", "add", f"{REMOTE}/32", "dev", "lo")
        nameservers = resolv_nameservers()
        for server in nameservers:
            addr = ipaddress.ip_address(server)
            if not addr.is_loopback:
                _ip("-6" if addr.version == 6 else "-4", "addr", "add", f"{server}/{addr.max_prefixlen}", "dev", "lo")
        listener = socket.create_server((REMOTE, 0))
        sockets.append(listener)
        net = ProbeNet(remote_port=listener.getsockname()[1], nameservers=nameservers)
        threads.append(threading.Thread(target=_serve_tcp, args=(listener, net, stop), daemon=True))
        for server in nameservers:
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((server, 53))
            sockets.append(udp)
            threads.append(threading.Thread(target=_serve_dns, args=(udp, net, stop), daemon=True))
        for thread in threads:
            thread.start()
        yield net
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        for sock in sockets:
            sock.close()
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
        os.close(home)


# Code for a separate Python process: a connection to the probe's remote listener, by whatever means.
CONNECT_SNIPPET = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("CONNECTED")
except OSError as exc:
    print(f"FAILED {type(exc).__name__} errno={exc.errno}")
    sys.exit(7)
"""
