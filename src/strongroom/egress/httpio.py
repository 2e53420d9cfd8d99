"""Strict HTTP/1.1 on asyncio streams, just enough for the gateway and the reference inference server.

Requests: one request line ``METHOD SP /path SP HTTP/1.1``; header lines ``name: value`` with token names,
no folding, no control characters, no duplicates; a body only with ``Content-Length`` (decimal digits).
``Transfer-Encoding`` of any kind is refused, so a chunked body, or one whose length two headers describe
differently (the request-smuggling shapes), never reaches a parser. Every limit is checked before the bytes
it limits are read.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

MAX_HEAD = 8 * 1024
_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (/[!-~]{0,255}) HTTP/1\.([01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [ -~]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_VALUE = re.compile(rb"[\t -~]{0,4096}")
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpError(Exception):
    """A request the server answers with ``status`` and closes the connection on."""

    def __init__(self, status: int, message: str, kind: str = "RequestRefused") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Head:
    method: str
    path: str
    version: int  # 0 or 1 (HTTP/1.x)
    headers: dict[str, str]  # lowercase names
    size: int

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        return connection != "close" if self.version == 1 else connection == "keep-alive"

    def content_length(self, cap: int) -> int:
        if "transfer-encoding" in self.headers:
            raise HttpError(411, "Transfer-Encoding (chunked bodies) is refused: send Content-Length", "ChunkedRefused")
        raw = self.headers.get("content-length")
        if raw is None:
            raise HttpError(411, "a body needs a Content-Length", "LengthRequired")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
            raise HttpError(400, "Content-Length must be decimal digits", "BadContentLength")
        length = int(raw)
        if length > cap:
            raise HttpError(413, f"body of {length} bytes; the cap is {cap}", "BodyTooLarge")
        return length


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "folded header lines are refused", "BadHeader")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header line", "BadHeader")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise HttpError(400, f"header {name.decode()[:40]} has control or non-ASCII characters", "BadHeader")
        key = name.decode().lower()
        if key in headers:
            raise HttpError(400, f"header {key} appears twice", "DuplicateHeader")
        headers[key] = value.decode()
    return headers


async def read_head(reader: asyncio.StreamReader, limit: int = MAX_HEAD) -> Head | None:
    """The next request head, or None when the client closed the connection cleanly between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise HttpError(400, "connection closed inside a request head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {limit} bytes", "HeadTooLarge") from None
    lines = raw[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise HttpError(400, "bare CR or LF in the request head", "BadHeader")
    found = _REQUEST_LINE.fullmatch(lines[0])
    if found is None:
        raise HttpError(400, "malformed request line", "BadRequestLine")
    return Head(found.group(1).decode(), found.group(2).decode(), int(found.group(3)), _headers(lines[1:]), len(raw))


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT; a loop off the main thread (tests, embedding) cannot take signal
    handlers and keeps its caller's way of stopping."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except RuntimeError:  # not the main thread
            return


def response(status: int, body: bytes, extra: dict[str, str] | None = None, close: bool = False) -> bytes:
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def error_body(message: str, kind: str) -> bytes:
    return json.dumps({"error": message, "kind": kind}).encode()


@dataclass(frozen=True)
class UpstreamReply:
    status: int
    body: bytes
    read_bytes: int  # every byte read from the host for this reply (head and body)
    keep_alive: bool


class UpstreamError(Exception):
    """The host's reply broke the protocol; ``read_bytes`` were read before that was clear."""

    def __init__(self, message: str, read_bytes: int) -> None:
        super().__init__(message)
        self.read_bytes = read_bytes


async def read_reply(reader: asyncio.StreamReader, cap: int) -> UpstreamReply:
    """One response from the host: Content-Length only, at most ``cap`` bytes of body."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise UpstreamError("the host closed the connection", len(exc.partial)) from None
    except asyncio.LimitOverrunError as exc:
        raise UpstreamError("the host's response head is too large", exc.consumed) from None
    lines = raw[:-4].split(b"\r\n")
    found = _STATUS_LINE.fullmatch(lines[0])
    try:
        if found is None:
            raise HttpError(502, "malformed status line")
        headers = _headers(lines[1:])
    except HttpError as exc:
        raise UpstreamError(str(exc), len(raw)) from None
    if "transfer-encoding" in headers:
        raise UpstreamError("the host sent Transfer-Encoding", len(raw))
    length_text = headers.get("content-length", "")
    if not length_text.isascii() or not length_text.isdigit() or len(length_text) > 12:
        raise UpstreamError("the host's response has no valid Content-Length", len(raw))
    length = int(length_text)
    if length > cap:
        raise UpstreamError(f"the host's response of {length} bytes is over the cap {cap}", len(raw))
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise UpstreamError("the host closed the connection mid-body", len(raw) + len(exc.partial)) from None
    keep = headers.get("connection", "").lower() != "close"
    return UpstreamReply(int(found.group(1)), body, len(raw) + length, keep)
