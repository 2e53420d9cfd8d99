"""A raw HTTP/1.1 client for hostile uploads: headers, then a body from a generator, sent until the server
answers (or closes); it reads the answer even when the server refuses before the body ends.

httpx cannot be used for these: it sends a body whole before reading, and a server that refuses early and
closes makes it raise instead of showing the refusal.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server took before it answered
    seconds: float  # from the first byte sent to the answer

    @property
    def closed(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def post(
    url: str,
    path: str,
    body: Iterable[bytes],
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    timeout: float = 60.0,
) -> RawReply:
    """POST ``body`` (its chunks) to ``url + path``; with ``chunked`` in chunked transfer encoding, else with
    the caller's Content-Length (which may lie) or none."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        head.append("Transfer-Encoding: chunked")
    start = time.perf_counter()
    sent = 0
    reply = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in body:
            if _readable(sock):
                break
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            sock.sendall(data)
            sent += len(chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    deadline = time.monotonic() + timeout
    try:
        while b"\r\n\r\n" not in reply or len(reply) < _expected(reply):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer from {url}{path} within {timeout} s")
            data = sock.recv(1 << 16)
            if not data:
                break
            reply += data
    except ConnectionResetError:
        pass
    seconds = time.perf_counter() - start
    sock.close()
    return _parse(reply, sent, seconds)


def _readable(sock: socket.socket) -> bool:
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def _expected(reply: bytes) -> int:
    head, _, _ = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(reply)


def _parse(reply: bytes, sent: int, seconds: float) -> RawReply:
    if not reply:
        raise ConnectionError("the server closed the connection without answering")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawReply(status, headers, body, sent, seconds)


def repeated(chunk: bytes, total: int) -> Iterable[bytes]:
    """``total`` bytes as repeats of ``chunk`` (the last one cut short), generated lazily."""
    left = total
    while left > 0:
        piece = chunk[:left]
        yield piece
        left -= len(piece)
