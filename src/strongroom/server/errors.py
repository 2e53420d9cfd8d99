"""Library errors as HTTP answers: one table from error class to status, one handler for every route.

The body is ``{"error": <one line>, "kind": <class name>}`` so clients rebuild the typed error; nothing is
decided by matching message text, and no deliberate error becomes a 500.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

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
from strongroom.people import UnknownPersonError


class BodyTooLargeError(MessageError):
    """A request body over its route's size limit."""


# Most specific first; anything else a caller did wrong is 400.
STATUS: tuple[tuple[type[StrongroomError], int], ...] = (
    (AwaitingSharesError, 202),  # not an error for the host: accepted, come back when custodians delivered
    (BodyTooLargeError, 413),
    (UnavailableError, 503),
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


def error_response(exc: StrongroomError) -> JSONResponse:
    body: dict[str, object] = {"error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, AwaitingSharesError):
        body |= {"delivered": exc.delivered, "threshold": exc.threshold}
    return JSONResponse(body, status_code=status_for(exc))


async def handle_strongroom_error(request: Request, exc: Exception) -> JSONResponse:
    """The app-wide handler for every deliberate library error."""
    assert isinstance(exc, StrongroomError)
    return error_response(exc)
