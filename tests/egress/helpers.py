"""Shared pieces for the egress tests: a hostile or honest fake host, a gateway on its own event loop thread,
raw HTTP over a socket. Every loop is bounded in count and time; every address is loopback or inside the
test's own network namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from strongroom.egress.gateway import Gateway, GatewayConfig
from strongroom.egress.httpio import read_head, response

T = TypeVar("T")
DIM = 8
VOCAB = 1000
MODELS = {
    "emb": {"kind": "embedding", "model_id": "blake3:" + "e" * 64, "dimension": DIM},
    "gen": {"kind": "generation", "model_id": "blake3:" + "a" * 64, "vocab_size": VOCAB},
}


class LoopThread:
    """An asyncio loop on a daemon thread; ``run(coro)`` runs a coroutine there and waits (bounded)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def fake_reply(path: str, body: dict[str, Any], mode: str) -> bytes:
    """What a host sends back: ``honest`` (valid, maximal), or a hostile variant."""
    if path == "/v1/embeddings":
        out: dict[str, Any] = {"model": body["model"], "embeddings": [[0.5] * DIM for _ in body["input"]]}
    else:
        n = body["max_tokens"]
        out = {"model": body["model"], "tokens": [7] * n, "text": "x" * (n * 32)}
    if mode == "extra-field":
        out["weights"] = "AAAA" * 64
    elif mode == "too-many-tokens" and "tokens" in out:
        out["tokens"] = out["tokens"] * 2
    elif mode == "nan":
        return b'{"model":"emb","embeddings":[[NaN]]}'
    return json.dumps(out).encode()


class FakeHost:
    """A host's inference server on ``host:port`` (in the calling namespace), answering by ``mode``."""

    def __init__(self, loop: LoopThread, host: str = "127.0.0.1", mode: str = "honest", port: int = 0) -> None:
        self.loop = loop
        self.mode = mode
        self.requests: list[tuple[str, bytes]] = []
        self.server = loop.run(asyncio.start_server(self._client, host, port))
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            for _ in range(100_000):
                head = await read_head(reader)
                if head is None:
                    break
                raw = await reader.readexactly(int(head.headers.get("content-length", "0")))
                self.requests.append((head.path, raw))
                await writer.drain()
                if self.mode == "chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                    continue
                writer.write(response(200, fake_reply(head.path, json.loads(raw), self.mode)))
        writer.close()

    def close(self) -> None:
        self.loop.run(self._close())  # asyncio servers are not thread-safe: close on their own loop

    async def _close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def running_gateway(
    loop: LoopThread,
    upstream_port: int,
    *,
    ledger: Any = None,
    kernel: Any = None,
    clock: Callable[[], float] = time.time,
    **settings: Any,
) -> Iterator[Gateway]:
    raw = {
        "host_id": "h1",
        "listen": "127.0.0.1:0",
        "upstream": f"127.0.0.1:{upstream_port}",
        "models": MODELS,
        "budget_bytes": 1_000_000,
        "rate_bytes_per_s": 1e9,
        "bucket_bytes": 10**9,
        "interval_seconds": 3600,
        **settings,
    }
    gateway = Gateway(GatewayConfig.from_json(raw), ledger, kernel, clock)
    loop.run(gateway.start())
    try:
        yield gateway
    finally:
        loop.run(gateway.stop(final=ledger is not None))


def raw_http(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``data`` as is; return (status, body) of the first response."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in received and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split(b" ")[1]), body


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def generate(tokens: int = 4) -> bytes:
    return json.dumps({"model": "gen", "prompt": "hi", "max_tokens": tokens}).encode()


def embed(n: int = 1) -> bytes:
    return json.dumps({"model": "emb", "input": ["a"] * n}).encode()


def main() -> None:
    """``python -m tests.egress.helpers ADDRESS PORT MODE``: a fake host until SIGTERM (at most an hour)."""
    import signal
    import sys

    loop = LoopThread()
    host = FakeHost(loop, sys.argv[1], sys.argv[3], int(sys.argv[2]))
    print(f"READY {host.port}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait(3600)
    host.close()


if __name__ == "__main__":
    main()
