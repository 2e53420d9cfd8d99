"""``POST /add`` as a plain ASGI handler in front of FastAPI: the same checks, less framework per request.

One entry per request is the ledger's most frequent call, and on this 2-core machine FastAPI's per-request
work (routing, the ``Request`` object, the exception middleware, ``JSONResponse``) was a large share of it.
This middleware answers ``POST /add`` itself and passes every other request on unchanged. What it checks,
in order, is exactly the FastAPI route's (``ledger_routes.Appends.append_one``): the body is read with the
60,000-byte cap (``Content-Length`` over it refused before a byte is read, a streamed body cut off as soon
as it passes it), the claimed signer and type are authorised, a duplicate is answered from the log, the
signature is verified off the event loop, the entry is sequenced; a refusal is paused
(``REFUSAL_PAUSE``) and answered in the server's one error shape (``errors.error_response``), with
``Connection: close`` when the body was not read to its end.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.errors import StrongroomError
from strongroom.ledger.entries import MAX_ENTRY_BYTES
from strongroom.server.bodies import declared_length
from strongroom.server.errors import MALFORMED, BodyTooLargeError, MalformedRequestError, error_response, one_line
from strongroom.server.ledger_routes import Appends, refused_slowly

log = logging.getLogger("strongroom.server")
PATH = "/add"
_JSON = [(b"content-type", b"application/json")]


async def read_capped(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; BodyTooLargeError as soon as it is over."""
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"entry: body of {declared} bytes is larger than the limit of {limit} bytes")
    parts: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequestError("entry: the client went away before the body ended")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyTooLargeError(f"entry: body larger than the limit of {limit} bytes")
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


class LeanAdd:
    """ASGI middleware: ``POST /add`` answered directly; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, appends: Appends) -> None:
        self.app = app
        self.appends = appends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body_read = False
        try:
            try:
                raw = await read_capped(receive, declared_length(scope["headers"]), MAX_ENTRY_BYTES)
                body_read = True
            except StrongroomError as exc:
                await refused_slowly(exc)
                raise
            receipt = await self.appends.append_one(raw)
        except StrongroomError as exc:
            await error_response(exc, close=not body_read)(scope, receive, send)
            return
        except MALFORMED as exc:  # parsing code that should have raised a typed error: the input was bad
            log.warning("POST /add: untyped %s answered 400", type(exc).__name__, exc_info=exc)
            error = MalformedRequestError(f"malformed request ({type(exc).__name__}: {one_line(str(exc), 120)})")
            await error_response(error, close=not body_read)(scope, receive, send)
            return
        body = json.dumps(receipt.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        start: Message = {
            "type": "http.response.start",
            "status": 201,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})
