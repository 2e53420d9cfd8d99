"""Library errors as HTTP answers: one table from error class to status, one handler for every route.

The body is ``{"error": <one line>, "kind": <class name>}`` so clients rebuild the typed error; nothing is
decided by matching message text, and no deliberate error becomes a 500. ``install`` also gives FastAPI's
own errors (a malformed query parameter, an unknown path) that shape, and answers 400 for the exceptions
that malformed input raises in parsing code (``MALFORMED``: ValueError, TypeError, KeyError, IndexError,
AttributeError, UnicodeError, RecursionError, OverflowError), so input alone never produces a 500; each is
logged with its traceback (a parser that lets one escape has a bug to fix: it should raise a typed error).
An error answered before the request's body was read to its end closes the connection (``Connection:
close``): the rest of the body is never read.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Scope

from strongroom.custody.errors import (
    AlreadyExistsError,
    AwaitingSharesError,
    MessageError,
    NotAuthorisedError,
    NotFoundError,
    PolicyError,
    ReleaseConflictError,
    UnavailableError,
)
from strongroom.errors import StrongroomError
from strongroom.hosts import UnknownHostError
from strongroom.ledger.errors import StorageError
from strongroom.people import UnknownPersonError

BODY_DONE = "strongroom.body_done"
log = logging.getLogger("strongroom.server")


class BodyTooLargeError(MessageError):
    """A request body over its route's size limit."""


class MalformedRequestError(StrongroomError):
    """A request that could not be parsed at all (a bad Content-Length, a body cut short, bytes that are not
    what the route reads)."""


# Most specific first; anything else a caller did wrong is 400.
STATUS: tuple[tuple[type[StrongroomError], int], ...] = (
    (AwaitingSharesError, 202),  # not an error for the host: accepted, come back when custodians delivered
    (BodyTooLargeError, 413),
    (UnavailableError, 503),
    (StorageError, 503),
    (ReleaseConflictError, 409),
    (AlreadyExistsError, 409),
    (NotFoundError, 404),
    (UnknownPersonError, 404),
    (UnknownHostError, 404),
    (PolicyError, 403),
    (NotAuthorisedError, 403),
)


def status_for(exc: StrongroomError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


def one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def error_response(exc: StrongroomError, close: bool = False) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    body: dict[str, object] = {"error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, AwaitingSharesError):
        body |= {"delivered": exc.delivered, "threshold": exc.threshold}
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


def body_done(scope: Scope) -> None:
    """Mark the request's body as read to its end (``strongroom.server.bodies`` does)."""
    scope[BODY_DONE] = True


def body_unread(scope: Scope) -> bool:
    """Whether the request has a body that was not read to its end."""
    if scope.get(BODY_DONE):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


async def handle_strongroom_error(request: Request, exc: Exception) -> JSONResponse:
    """The app-wide handler for every deliberate library error."""
    assert isinstance(exc, StrongroomError)
    return error_response(exc, close=body_unread(request.scope))


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's parameter validation (``?index=x``), in the same shape: 422, one line naming the field."""
    assert isinstance(exc, RequestValidationError)
    problems: list[Any] = list(exc.errors())
    if problems:
        first = problems[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}"
    else:
        message = "invalid request"
    body = {"error": one_line(message), "kind": "RequestValidationError"}
    headers = {"Connection": "close"} if body_unread(request.scope) else None
    return JSONResponse(body, status_code=422, headers=headers)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (an unknown path 404, a wrong method 405), in the same shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if body_unread(request.scope):
        headers["Connection"] = "close"
    body = {"error": one_line(str(exc.detail)), "kind": "HTTPException"}
    return JSONResponse(body, status_code=exc.status_code, headers=headers or None)


async def handle_malformed(request: Request, exc: Exception) -> JSONResponse:
    """An exception that malformed input raises in parsing code: the request was bad, so 400 (logged: the
    parser should have raised a typed error)."""
    log.warning("%s %s: untyped %s answered 400", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    error = MalformedRequestError(f"malformed request ({type(exc).__name__}: {one_line(str(exc), 120)})")
    return error_response(error, close=body_unread(request.scope))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else is the server's fault: 500 in the same shape, with no detail (it is logged)."""
    return JSONResponse({"error": "internal error", "kind": "InternalError"}, status_code=500)


MALFORMED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    UnicodeError,
    RecursionError,
    OverflowError,
)


def install(app: FastAPI) -> None:
    """Every handler above on ``app``."""
    app.add_exception_handler(StrongroomError, handle_strongroom_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    for kind in MALFORMED:
        app.add_exception_handler(kind, handle_malformed)
    app.add_exception_handler(Exception, handle_unexpected)
