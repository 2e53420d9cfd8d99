"""A geography of the test's own: network namespaces joined through one router namespace whose only path
between nodes is a userspace delay relay (``relay.py``).

Each node (a landmark or a host) has a namespace with one veth to the router: node ``i`` is 198.18.i.2, the
router's side 198.18.i.1 (RFC 2544's benchmarking range, 198.18.0.0/15, which nothing routes; only these
namespaces ever hold those addresses, and the router never forwards in the kernel: ``ip_forward`` is 0). To
reach node ``b`` from node ``a``, ``a`` sends to ``(198.18.a.1, 20000 + b)``: the relay takes it there and
sends it on to ``b``'s service port after holding it for half the round trip their distance allows, and
holds the reply as long. The delays are those of light in fibre (200 km/ms) along the great circle between
the nodes' true positions, so an honest host's RTTs are realistic and the verdict logic, which assumes the
vacuum speed, sees real-world units. No compression factor is applied: continental distances take a few
milliseconds to tens of milliseconds of real time, which keeps the tests fast already, and scaling
distances down would multiply the emulator's own overhead (tenths of a millisecond per round trip: 15-75 km
of vacuum-speed radius) by the same factor.

Code runs inside a node with ``lab.run_in(node, fn)`` (a thread that enters the namespace: sockets it makes
belong there) or ``lab.spawn(node, argv)`` (``ip netns exec``). Needs root, ``ip`` (iproute2) and veth
support. Every loop and wait is bounded in count and time; ``close`` removes every namespace it made.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pyproj import Geod

CLONE_NEWNET = 0x40000000
FIBRE_KM_PER_MS = 200.0
SERVICE_PORT = 7700
RELAY = Path(__file__).with_name("relay.py")
GEOD = Geod(ellps="WGS84")
T = TypeVar("T")

# Real coordinates (city centres, WGS 84): landmarks and hosts of the emulated topology.
PLACES: dict[str, tuple[float, float]] = {
    # United States
    "wichita": (37.687, -97.330),
    "kansas-city": (39.100, -94.579),
    "omaha": (41.257, -95.935),
    "denver": (39.739, -104.990),
    "dallas": (32.777, -96.797),
    "oklahoma-city": (35.468, -97.516),
    "st-louis": (38.627, -90.199),
    "des-moines": (41.587, -93.625),
    "tulsa": (36.154, -95.993),
    "salina": (38.840, -97.611),
    "houston": (29.760, -95.370),
    # elsewhere
    "mexico-city": (19.433, -99.133),
    "toronto": (43.653, -79.383),
    # Germany
    "kassel": (51.313, 9.479),
    "goettingen": (51.541, 9.916),
    "paderborn": (51.719, 8.754),
    "fulda": (50.555, 9.680),
    "erfurt": (50.978, 11.029),
    "hanover": (52.375, 9.732),
    "frankfurt": (50.110, 8.682),
}


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    _, _, metres = GEOD.inv(a[1], a[0], b[1], b[0])
    return float(metres) / 1000.0


def fibre_rtt_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    return 2 * distance_km(a, b) / FIBRE_KM_PER_MS


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")


@dataclass
class Node:
    name: str
    index: int
    namespace: str
    position: tuple[float, float]

    @property
    def address(self) -> str:
        return f"198.18.{self.index}.2"

    @property
    def gateway(self) -> str:
        return f"198.18.{self.index}.1"


@dataclass
class Route:
    listen: tuple[str, int]
    target: tuple[str, int]
    delay_ms: float  # one way


@dataclass
class GeoLab:
    """Namespaces, veths, the relay; ``nodes`` are name -> true position."""

    positions: dict[str, tuple[float, float]]
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    nodes: dict[str, Node] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def router(self) -> str:
        return f"geo-{self.tag}-r"

    def start(self, workdir: Path, extra_routes: Sequence[Route] = ()) -> GeoLab:
        self.workdir = workdir
        try:
            self._build(extra_routes)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self, extra_routes: Sequence[Route]) -> None:
        if len(self.positions) > 200:
            raise ValueError("at most 200 nodes")
        _ip("netns", "add", self.router)
        self.namespaces.append(self.router)
        _ip("-n", self.router, "link", "set", "lo", "up")
        for index, (name, position) in enumerate(sorted(self.positions.items()), start=1):
            node = Node(name, index, f"geo-{self.tag}-{index}", position)
            self.nodes[name] = node
            _ip("netns", "add", node.namespace)
            self.namespaces.append(node.namespace)
            outside, inside = f"g{self.tag}r{index}", f"g{self.tag}n{index}"
            _ip(
                "link",
                "add",
                outside,
                "netns",
                self.router,
                "type",
                "veth",
                "peer",
                "name",
                inside,
                "netns",
                node.namespace,
            )
            _ip("-n", self.router, "addr", "add", f"{node.gateway}/24", "dev", outside)
            _ip("-n", self.router, "link", "set", outside, "up")
            _ip("-n", node.namespace, "addr", "add", f"{node.address}/24", "dev", inside)
            _ip("-n", node.namespace, "link", "set", inside, "up")
            _ip("-n", node.namespace, "link", "set", "lo", "up")
        subprocess.run(
            ["ip", "netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=0"], timeout=10, check=True
        )
        for a in self.nodes.values():
            for b in self.nodes.values():
                if a is not b:
                    one_way = fibre_rtt_ms(a.position, b.position) / 2
                    self.routes.append(Route((a.gateway, 20000 + b.index), (b.address, SERVICE_PORT), one_way))
        self.routes.extend(extra_routes)
        self.processes.append(self._relay(self.router, self.routes, "relay"))

    def _relay(self, namespace: str, routes: Sequence[Route], name: str) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        config = self.workdir / f"{name}.json"
        config.write_text(
            json.dumps(
                {
                    "routes": [{"listen": r.listen, "target": r.target, "delay_ms": r.delay_ms} for r in routes],
                    "lifetime_s": 600,
                }
            )
        )
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(RELAY), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded: the relay prints READY or exits
        if line.strip() != b"READY":
            process.kill()
            raise OSError(f"relay {name} did not start: {process.stderr.read().decode() if process.stderr else ''}")
        return process

    def forwarder(self, node: str | None, routes: Sequence[Route], name: str) -> subprocess.Popen[bytes]:
        """Another relay, run inside ``node``'s namespace (None: the router's), e.g. an attacker's forwarder."""
        process = self._relay(self.nodes[node].namespace if node else self.router, routes, name)
        self.processes.append(process)
        return process

    def address_of(self, source: str, target: str) -> tuple[str, int]:
        """Where ``source`` sends to reach ``target``'s service port through the relay."""
        return self.nodes[source].gateway, 20000 + self.nodes[target].index

    def run_in(self, node: str, fn: Callable[[], T], timeout: float = 60.0) -> T:
        """Run ``fn`` in a thread inside ``node``'s namespace; its result, or its exception re-raised."""
        result: list[Any] = []

        def body() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.nodes[node].namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                result.append(("ok", fn()))
            except BaseException as exc:
                result.append(("error", exc))

        thread = threading.Thread(target=body, daemon=True, name=f"in-{node}")
        thread.start()
        thread.join(timeout)
        if not result:
            raise TimeoutError(f"code in {node} did not finish within {timeout} s")
        kind, value = result[0]
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def spawn(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["ip", "netns", "exec", self.nodes[node].namespace, *argv], **kwargs)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for namespace in reversed(self.namespaces):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                _ip("netns", "del", namespace)
        self.namespaces.clear()


@contextlib.contextmanager
def geolab(positions: dict[str, tuple[float, float]], workdir: Path) -> Iterator[GeoLab]:
    lab = GeoLab(dict(positions))
    lab.start(workdir)
    try:
        yield lab
    finally:
        lab.close()


class Landmarks:
    """Landmark services running in this process, each on a thread inside its node's namespace."""

    def __init__(self, lab: GeoLab, signers: dict[str, Any], answer_timeout: float = 1.0) -> None:
        import asyncio

        from strongroom.geo.service import LandmarkService, ServiceSettings, bind, serve

        self.stops: list[tuple[Any, Any]] = []
        self.threads: list[threading.Thread] = []
        ready = threading.Barrier(len(signers) + 1, timeout=20)

        def run(name: str, signer: Any) -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{lab.nodes[name].namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)

            async def main() -> None:
                stop = asyncio.Event()
                self.stops.append((asyncio.get_running_loop(), stop))
                udp, tcp = bind(lab.nodes[name].address, SERVICE_PORT)
                task = asyncio.create_task(
                    serve(LandmarkService(name, signer, ServiceSettings(answer_timeout=answer_timeout)), udp, tcp, stop)
                )
                await asyncio.sleep(0.05)
                ready.wait()
                await task

            asyncio.run(main())

        for name, signer in signers.items():
            thread = threading.Thread(target=run, args=(name, signer), daemon=True, name=f"landmark-{name}")
            thread.start()
            self.threads.append(thread)
        ready.wait()

    def close(self) -> None:
        for loop, stop in self.stops:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        for thread in self.threads:
            thread.join(timeout=5)
