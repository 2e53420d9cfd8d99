"""Network namespaces of the test's own: weight hosts, their gateway box and a sink, joined by veth pairs.

    host i (192.0.2.4i+2/30) --veth-- (192.0.2.4i+1) gateway box (198.51.100.1) --veth-- (198.51.100.2) sink

The gateway box forwards IP (so without the kernel layer a host *can* reach the sink directly: the tests
show it first), runs the gateways and a real ``strongroom serve`` on its own loopback. Addresses are from
the documentation ranges (RFC 5737) and exist only inside these namespaces; everything is deleted after.
Needs root (tests and CI run as root). Every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
ROOT = Path(__file__).resolve().parents[2]
SINK = "198.51.100.2"
GW_SINK_SIDE = "198.51.100.1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def env() -> dict[str, str]:
    """The environment for processes the tests start: this worktree's code first."""
    values = dict(os.environ)
    values["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"
    values["HF_HUB_OFFLINE"] = "1"
    values["TRANSFORMERS_OFFLINE"] = "1"
    return values


@dataclass
class HostNet:
    index: int
    netns: str
    address: str  # the host's own address
    gateway: str  # the gateway box's address on this host's link


@dataclass
class Lab:
    gateway_ns: str
    sink_ns: str
    hosts: list[HostNet]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, netns: str, *command: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A process inside ``netns`` (stopped at the end of the lab if still running)."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, *command],
            env={**env(), **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def python(self, netns: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(netns, sys.executable, *args, extra_env=extra_env)

    def run(self, netns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``python -m strongroom.cli.main ARGS`` inside ``netns``, to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "strongroom.cli.main", *args],
            env=env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> str:
    """SIGTERM, wait (bounded), SIGKILL if need be; returns what it printed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    out = process.stdout.read() if process.stdout else b""
    return out.decode(errors="replace")


@contextlib.contextmanager
def lab(hosts: int) -> Iterator[Lab]:
    tag = "sreg" + secrets.token_hex(3)
    gw, sink = f"{tag}-gw", f"{tag}-sink"
    names = [gw, sink] + [f"{tag}-h{i}" for i in range(hosts)]
    made: list[str] = []
    result = Lab(gw, sink, [])
    try:
        for name in names:
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        subprocess.run(
            ["ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            timeout=10,
            capture_output=True,
        )
        ip("-n", gw, "link", "add", "sv", "type", "veth", "peer", "name", "eth0", "netns", sink)
        ip("-n", gw, "addr", "add", f"{GW_SINK_SIDE}/24", "dev", "sv")
        ip("-n", gw, "link", "set", "sv", "up")
        ip("-n", sink, "addr", "add", f"{SINK}/24", "dev", "eth0")
        ip("-n", sink, "link", "set", "eth0", "up")
        ip("-n", sink, "route", "add", "192.0.2.0/24", "via", GW_SINK_SIDE)
        for i in range(hosts):
            ns = f"{tag}-h{i}"
            gw_addr, host_addr = f"192.0.2.{4 * i + 1}", f"192.0.2.{4 * i + 2}"
            ip("-n", gw, "link", "add", f"hv{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", gw, "addr", "add", f"{gw_addr}/30", "dev", f"hv{i}")
            ip("-n", gw, "link", "set", f"hv{i}", "up")
            ip("-n", ns, "addr", "add", f"{host_addr}/30", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", gw_addr)
            result.hosts.append(HostNet(i, ns, host_addr, gw_addr))
        yield result
    finally:
        for process in result.processes:
            stop(process, timeout=10)
        for name in made:
            with contextlib.suppress(subprocess.SubprocessError):
                ip("netns", "del", name)


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the block with this thread in ``netns`` (sockets made here stay there); back after."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        yield
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
        os.close(home)
        os.close(target)


class Listener:
    """A TCP listener in a namespace that counts every byte it receives (bounded in time by ``close``)."""

    def __init__(self, netns: str, address: str, port: int = 0) -> None:
        with inside(netns):
            self.sock = socket.create_server((address, port))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        workers = []
        while not self._stop.is_set() and self.connections < 1000:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            worker = threading.Thread(target=self._drain, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self.received += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


def blast(netns: str, address: str, port: int, total: int, seconds: float = 3.0, reset: bool = True) -> int:
    """From ``netns``, try to send ``total`` bytes to address:port within ``seconds``; returns bytes the
    sender's kernel accepted (what arrived is the listener's count). ``reset=False`` closes gracefully, so
    the kernel still delivers what it had buffered."""
    sent = 0
    with inside(netns):
        try:
            sock = socket.create_connection((address, port), timeout=min(seconds, 2.0))
        except OSError:
            return 0
    deadline = time.monotonic() + seconds
    chunk = b"w" * 16384
    with sock:
        # close with a reset: unsent bytes are discarded, not retransmitted into a later test's quota
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(0.2)
        while sent < total and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk[: total - sent])
            except TimeoutError:
                continue
            except OSError:
                break
    return sent


def can_connect(netns: str, address: str, port: int, timeout: float = 1.5) -> bool:
    with inside(netns):
        try:
            socket.create_connection((address, port), timeout=timeout).close()
            return True
        except OSError:
            return False


def wait_for(predicate, timeout: float = 15.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy (bounded); return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value
