"""The host side of a measurement: ask landmarks to measure this host, answer their challenges, keep reports.

``prove`` runs one session per landmark, all at once, each bounded by ``timeout`` seconds. A challenge is
answered only if it is signed by the landmark the host asked (from the landmark set), names this host and its
key, and carries the epoch the host asked for: the host's key never signs for anyone else. The answer is
signed on the event loop thread as soon as the challenge is read, so the time the landmark measures includes
the signing (a TPM or token key is slower: that only makes the bound looser).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.geo.errors import MeasurementError, ProtocolError
from strongroom.geo.landmarks import Landmark, LandmarkSet
from strongroom.geo.protocol import (
    MAX_MESSAGE,
    MAX_SAMPLES,
    Challenge,
    Hello,
    decode,
    encode,
    epoch_now,
    frame,
    respond,
    verify_report,
)
from strongroom.signing import SigningKey


@dataclass(frozen=True)
class Target:
    """A landmark and where it listens."""

    landmark: Landmark
    host: str
    port: int


class _Conn:
    """A UDP or TCP connection carrying whole messages."""

    def __init__(self, transport: str) -> None:
        self.kind = transport
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self.writer: Any = None

    async def open(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        conn = self

        if self.kind == "udp":

            class _P(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    with contextlib.suppress(asyncio.QueueFull):
                        conn.queue.put_nowait(data)

            datagrams, _ = await loop.create_datagram_endpoint(_P, remote_addr=(host, port))
            self.writer = datagrams
        else:

            class _T(asyncio.Protocol):
                buffer = b""

                def data_received(self, data: bytes) -> None:
                    self.buffer += data
                    while len(self.buffer) >= 4:
                        size = int.from_bytes(self.buffer[:4], "big")
                        if size > MAX_MESSAGE:
                            conn.writer.close()
                            return
                        if len(self.buffer) < 4 + size:
                            return
                        message, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                        with contextlib.suppress(asyncio.QueueFull):
                            conn.queue.put_nowait(message)

            transport, _ = await loop.create_connection(_T, host, port)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.writer = transport

    def send(self, data: bytes) -> None:
        if self.kind == "udp":
            self.writer.sendto(data)
        else:
            self.writer.write(frame(data))

    async def receive(self, timeout: float) -> bytes | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout=max(timeout, 0.0))
        except TimeoutError:
            return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure(
    target: Target,
    host_id: str,
    key: SigningKey,
    *,
    samples: int = 10,
    epoch: int | None = None,
    transport: str = "udp",
    timeout: float = 20.0,
) -> dict[str, Any]:
    """One session with one landmark; the landmark's signed report message (checked to be signed by it)."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise MeasurementError(f"samples must be 1..{MAX_SAMPLES}")
    epoch = epoch_now() if epoch is None else epoch
    landmark = target.landmark
    hello = encode(Hello(host_id, key.verifier, epoch, samples).message())
    conn = _Conn(transport)
    deadline = time.monotonic() + timeout
    try:
        await asyncio.wait_for(conn.open(target.host, target.port), timeout=timeout)
        conn.send(hello)
        hellos = 1
        answered: set[str] = set()
        for _ in range(4 * samples + 16):
            wait = min(deadline - time.monotonic(), 2.0 if not answered else deadline - time.monotonic())
            data = await conn.receive(wait)
            if data is None:
                if answered or hellos >= 3 or time.monotonic() >= deadline:
                    break
                conn.send(hello)  # a lost hello (UDP): ask again, a few times at most
                hellos += 1
                continue
            message = decode(data)
            kind = message.get("type")
            if kind == "challenge":
                challenge = Challenge.verify(message, landmark)
                if (challenge.host, challenge.host_key, challenge.epoch) != (host_id, key.key_id, epoch):
                    raise ProtocolError(f"{landmark.landmark_id} sent a challenge for another host, key or epoch")
                if challenge.nonce in answered:
                    continue  # a duplicated datagram: never sign the same nonce twice
                answered.add(challenge.nonce)
                conn.send(encode(respond(challenge, key)))
            elif kind == "report":
                verify_report(message, LandmarkSet([landmark]))
                return message
            elif kind == "error":
                raise MeasurementError(f"{landmark.landmark_id} refused: {str(message.get('error'))[:300]}")
        raise MeasurementError(f"{landmark.landmark_id}: no report within {timeout:g} s")
    except (OSError, TimeoutError) as exc:
        raise MeasurementError(f"{landmark.landmark_id} at {target.host}:{target.port}: {exc}") from None
    finally:
        conn.close()


@dataclass
class ProofRun:
    """What ``prove`` collected: reports by landmark id, and why the others failed."""

    host: str
    epoch: int
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "epoch": self.epoch,
            "reports": [self.reports[k] for k in sorted(self.reports)],
            "failures": dict(sorted(self.failures.items())),
        }


async def prove_async(
    host_id: str,
    key: SigningKey,
    targets: Sequence[Target],
    *,
    samples: int = 10,
    transport: str = "udp",
    timeout: float = 20.0,
    epoch: int | None = None,
    parallel: int = 4,
) -> ProofRun:
    """Sessions with at most ``parallel`` landmarks at a time (each answer waits for the host's CPU: running
    every session at once would queue answers behind each other and inflate the RTTs, never shrink them)."""
    epoch = epoch_now() if epoch is None else epoch
    run = ProofRun(host_id, epoch)
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(target: Target) -> dict[str, Any]:
        async with gate:
            return await measure(
                target, host_id, key, samples=samples, epoch=epoch, transport=transport, timeout=timeout
            )

    results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
    for target, result in zip(targets, results, strict=True):
        name = target.landmark.landmark_id
        if isinstance(result, dict):
            run.reports[name] = result
        elif isinstance(result, ProtocolError | MeasurementError):
            run.failures[name] = str(result)
        elif isinstance(result, BaseException):
            raise result
    return run


def prove(
    host_id: str,
    key: SigningKey,
    targets: Sequence[Target],
    *,
    samples: int = 10,
    transport: str = "udp",
    timeout: float = 20.0,
    epoch: int | None = None,
    parallel: int = 4,
) -> ProofRun:
    """Be measured by every target landmark (blocking); see ``prove_async``."""
    return asyncio.run(
        prove_async(
            host_id, key, targets, samples=samples, transport=transport, timeout=timeout, epoch=epoch, parallel=parallel
        )
    )
