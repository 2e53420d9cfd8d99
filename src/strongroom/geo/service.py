"""The landmark service: answers a host's hello with signed challenges over UDP or TCP and reports RTTs.

One asyncio loop serves both transports. Time is taken with ``time.monotonic_ns``: just before a challenge
is handed to the kernel, and when its answer is delivered to the protocol (``datagram_received`` or
``data_received``), before any parsing or signature check, so the landmark's own processing adds as little
as possible and nothing is ever subtracted. An answer to the outstanding nonce under another key than the
announced one moves on to the next challenge (three end the session); a replayed or stray answer is refused
and the landmark keeps waiting for the real one. Every session is bounded: at most ``2 * samples + 4``
challenges, ``answer_timeout`` seconds for each answer, ``session_seconds`` in all, ``max_sessions`` at
once, messages of at most ``MAX_MESSAGE`` bytes; anything else is dropped or ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strongroom.geo.errors import ForeignKeyError, ProtocolError
from strongroom.geo.protocol import (
    EPOCH_SLACK,
    MAX_MESSAGE,
    Challenge,
    Hello,
    Report,
    Sample,
    check_response,
    decode,
    encode,
    epoch_now,
    frame,
    now_text,
)
from strongroom.signing import SigningKey

log = logging.getLogger("strongroom.geo.landmark")
MAX_BAD_SIGNATURES = 3  # answers to the outstanding nonce under another key end the session after this many


@dataclass(frozen=True)
class ServiceSettings:
    answer_timeout: float = 1.0
    session_seconds: float = 30.0
    max_sessions: int = 64


class _Inbox:
    """Messages for one session, each stamped with its arrival time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue(maxsize=64)

    def put(self, data: bytes, arrived: int) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((data, arrived))

    async def get(self, timeout: float) -> tuple[bytes, int] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout=max(timeout, 0.0))
        except TimeoutError:
            return None


class LandmarkService:
    """One landmark: its id and signing key, and the sessions it is running."""

    def __init__(
        self,
        landmark_id: str,
        signer: SigningKey,
        settings: ServiceSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.landmark_id = landmark_id
        self.signer = signer
        self.settings = settings or ServiceSettings()
        self.clock = clock
        self.sessions = 0
        self.completed = 0

    async def run_session(
        self, hello: Hello, send: Callable[[bytes], None], inbox: _Inbox, transport: str
    ) -> dict[str, Any]:
        """Challenge the host ``hello.samples`` times; return the signed report message."""
        current = epoch_now(self.clock())
        if abs(hello.epoch - current) > EPOCH_SLACK:
            raise ProtocolError(f"epoch {hello.epoch} is not current ({current})")
        deadline = time.monotonic() + self.settings.session_seconds
        samples: list[Sample] = []
        refused = bad_signatures = 0
        for seq in range(2 * hello.samples + 4):
            if len(samples) >= hello.samples or time.monotonic() >= deadline or bad_signatures >= MAX_BAD_SIGNATURES:
                break
            nonce = secrets.token_bytes(32).hex()
            challenge = Challenge(self.landmark_id, hello.host, hello.verifier.key_id, hello.epoch, nonce, seq)
            data = encode(challenge.signed(self.signer))
            answer_by = min(deadline, time.monotonic() + self.settings.answer_timeout)
            sent = time.monotonic_ns()
            send(data)
            for _ in range(16):  # stray or replayed messages per challenge, at most
                got = await inbox.get(answer_by - time.monotonic())
                if got is None:
                    break
                message, arrived = got
                try:
                    signature = check_response(
                        decode(message), nonce, self.landmark_id, hello.host, hello.epoch, hello.verifier
                    )
                except ForeignKeyError as exc:  # the outstanding nonce, signed by another key: next challenge
                    refused += 1
                    bad_signatures += 1
                    log.info("landmark %s: refused an answer from %s: %s", self.landmark_id, hello.host, exc)
                    break
                except ProtocolError as exc:  # a replayed or stray answer: keep waiting for the real one
                    refused += 1
                    log.info("landmark %s: refused an answer from %s: %s", self.landmark_id, hello.host, exc)
                    continue
                samples.append(Sample(nonce, arrived - sent, signature))
                break
        report = Report(
            self.landmark_id,
            hello.host,
            hello.verifier.key_id,
            hello.epoch,
            transport,
            tuple(samples),
            refused,
            now_text(),
        )
        self.completed += 1
        return report.signed(self.signer)

    async def _guarded(self, hello_data: bytes, send: Callable[[bytes], None], inbox: _Inbox, transport: str) -> None:
        try:
            hello = Hello.parse(decode(hello_data))
            report = await self.run_session(hello, send, inbox, transport)
            send(encode(report))
        except ProtocolError as exc:
            with contextlib.suppress(ProtocolError):
                send(encode({"type": "error", "error": str(exc)[:300]}))
        finally:
            self.sessions -= 1

    def start(self, hello_data: bytes, send: Callable[[bytes], None], inbox: _Inbox, transport: str) -> bool:
        if self.sessions >= self.settings.max_sessions:
            return False
        self.sessions += 1
        asyncio.get_running_loop().create_task(self._guarded(hello_data, send, inbox, transport))
        return True


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: LandmarkService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None
        self.inboxes: dict[Any, tuple[_Inbox, float]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        arrived = time.monotonic_ns()
        if len(data) > MAX_MESSAGE or self.transport is None:
            return
        now = time.monotonic()
        current = self.inboxes.get(addr)
        if current is not None and current[1] > now and b'"type":"hello"' not in data:
            current[0].put(data, arrived)
            return
        if b'"type":"hello"' not in data:
            return
        if len(self.inboxes) > 4 * self.service.settings.max_sessions:
            self.inboxes = {k: v for k, v in self.inboxes.items() if v[1] > now}
        inbox = _Inbox()
        transport = self.transport
        if self.service.start(data, lambda out: transport.sendto(out, addr), inbox, "udp"):
            self.inboxes[addr] = (inbox, now + self.service.settings.session_seconds + 1)


class _Tcp(asyncio.Protocol):
    def __init__(self, service: LandmarkService) -> None:
        self.service = service
        self.buffer = b""
        self.inbox: _Inbox | None = None
        self.transport: asyncio.Transport | None = None
        self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        asyncio.get_running_loop().call_later(self.service.settings.session_seconds + 2, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame(data))

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic_ns()
        self.buffer += data
        while len(self.buffer) >= 4 and self.transport is not None:
            size = int.from_bytes(self.buffer[:4], "big")
            if size > MAX_MESSAGE or self.frames > 200:
                self.transport.close()
                return
            if len(self.buffer) < 4 + size:
                return
            message, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            self.frames += 1
            if self.inbox is None:
                self.inbox = _Inbox()
                if not self.service.start(message, self._send, self.inbox, "tcp"):
                    self.transport.close()
            else:
                self.inbox.put(message, arrived)


async def serve(
    service: LandmarkService,
    udp: socket.socket | None = None,
    tcp: socket.socket | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve on already-bound sockets (either or both) until ``stop`` is set (or forever)."""
    loop = asyncio.get_running_loop()
    closers: list[Callable[[], None]] = []
    if udp is not None:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(service), sock=udp)
        closers.append(transport.close)
    if tcp is not None:
        server = await loop.create_server(lambda: _Tcp(service), sock=tcp)
        closers.append(server.close)
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        for close in closers:
            close()


def bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to (host, port) (port 0: the TCP socket picks, UDP takes the same)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(64)
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.bind((host, tcp.getsockname()[1]))
    return udp, tcp
