"""Request bodies read with a cap: refused on a ``Content-Length`` over the route's limit before a byte is
read, and cut off as soon as a streamed body (chunked, or lying about its length) passes the limit.

Memory per request is bounded by the route's limit plus one chunk of the server's read buffer (uvicorn
pauses reading at 64 KiB until the application asks for more). A body refused before it was fully read is
answered with ``Connection: close`` (``strongroom.server.errors``), so the rest is never read.

Limits: ledger ``/add`` 60,000 bytes (``MAX_ENTRY_BYTES``), ``/add-bundle`` 8 MiB, custody bodies 64 KiB
(``MAX_MESSAGE_BYTES``), the witness's ``/add-checkpoint`` 64 KiB, and any body at all 8 MiB (``BodyLimit``,
which covers a route that forgets).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.server.errors import BodyTooLargeError, MalformedRequestError, body_done, error_response

MAX_ANY_BODY = 8 << 20
_LENGTH = re.compile(rb"[0-9]{1,19}")


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's ``Content-Length``, if it has one; MalformedRequestError if it is not one decimal."""
    values = [v for k, v in headers if k.lower() == b"content-length"]
    if not values:
        return None
    if len(set(values)) != 1 or not _LENGTH.fullmatch(values[0].strip()):
        raise MalformedRequestError("Content-Length is not one decimal number")
    return int(values[0])


async def body_chunks(request: Request, limit: int, what: str) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; BodyTooLargeError (413) as soon as it is over ``limit`` bytes,
    before reading at all when ``Content-Length`` says so."""
    declared = declared_length(request.scope["headers"])
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"{what}: body of {declared} bytes is larger than the limit of {limit} bytes")
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise BodyTooLargeError(f"{what}: body larger than the limit of {limit} bytes")
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise MalformedRequestError(f"{what}: the client went away before the body ended") from None
    body_done(request.scope)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The whole body, at most ``limit`` bytes (see ``body_chunks``)."""
    parts = [chunk async for chunk in body_chunks(request, limit, what)]
    return parts[0] if len(parts) == 1 else b"".join(parts)


class BodyLimit:
    """ASGI middleware: no request body over ``limit`` bytes reaches any route, whether or not the route reads
    its body through ``read_body`` (defence in depth; routes have tighter limits of their own)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_ANY_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = declared_length(scope["headers"])
        except MalformedRequestError as exc:
            await error_response(exc, close=True)(scope, receive, send)
            return
        if declared is not None and declared > self.limit:
            too_large = BodyTooLargeError(
                f"body of {declared} bytes is larger than the server's limit of {self.limit} bytes"
            )
            await error_response(too_large, close=True)(scope, receive, send)
            return
        seen = 0
        limit = self.limit

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(f"body larger than the server's limit of {limit} bytes")
            return message

        await self.app(scope, capped, send)
