"""HTTP routes for custody and people, a thin layer over ``CustodyService``.

Every body is a signed message (``{"payload", "signer", "signature"}``), at most 64 KiB; errors come back
as ``{"error": "<one line>"}`` with 400 (malformed, forged, replayed), 403 (policy), 404, 409 (already
released) or 503 (ledger, database or key provider unreachable: nothing released).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from strongroom.custody.admin import PENDING_QUERY_TYPE, PERSON_CHANGE_TYPE, REGISTRATION_TYPE
from strongroom.custody.errors import (
    CustodyError,
    MessageError,
    PolicyError,
    ReleaseConflictError,
    UnavailableError,
)
from strongroom.custody.messages import MAX_MESSAGE_BYTES, SignedMessage, check_window
from strongroom.custody.service import CustodyService
from strongroom.errors import StrongroomError
from strongroom.people.errors import PeopleError
from strongroom.server.priority import ReleaseFirstGate

T = TypeVar("T")


def status_for(exc: StrongroomError) -> int:
    if isinstance(exc, UnavailableError):
        return 503
    if isinstance(exc, ReleaseConflictError):
        return 409
    if isinstance(exc, PolicyError):
        return 403
    if isinstance(exc, MessageError | PeopleError):
        return 400
    if isinstance(exc, CustodyError) and str(exc).startswith(("no release request", "model ")):
        return 404
    return 400


def error_response(exc: StrongroomError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status_for(exc))


async def signed_body(request: Request, what: str) -> SignedMessage:
    raw = await request.body()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise HTTPException(413, f"{what}: body larger than {MAX_MESSAGE_BYTES} bytes")
    return SignedMessage.from_json(raw, what)


def custody_router(
    service: CustodyService, officers: Callable[[], dict[str, Any]], clock: Callable[[], datetime]
) -> APIRouter:
    """Routes under /v1/custody and /v1/people; ``officers`` maps key id -> Verifier of security officers."""
    router = APIRouter()
    # Releases get their own workers and go ahead of bookkeeping (see priority.py). Bookkeeping runs on one
    # worker: more threads only add contenders for the interpreter lock, and it bounds how much work a
    # saturated server takes on while releases wait (admission control).
    release_pool = ThreadPoolExecutor(8, thread_name_prefix="strongroom-release")
    bookkeeping_pool = ThreadPoolExecutor(1, thread_name_prefix="strongroom-custody")
    gate = ReleaseFirstGate()

    def release_first(function: Callable[..., T], *args: Any) -> T:
        with gate.urgent():
            return function(*args)

    def after_releases(function: Callable[..., T], *args: Any) -> T:
        with gate.ordinary():
            return function(*args)

    async def bookkeeping(function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(bookkeeping_pool, after_releases, function, *args)

    def check_officer(message: SignedMessage, message_type: str, what: str) -> None:
        """The message has the expected type, is unexpired, and is signed by an authorised security officer."""
        if message.payload.get("type") != message_type:
            raise MessageError(f"{what}: type must be {message_type}")
        check_window(message.payload, clock(), what)
        officer = officers().get(message.signer)
        if officer is None:
            raise MessageError(f"{what}: not signed by an authorised security officer")
        message.verify(officer, what)

    @router.post("/v1/custody/requests", status_code=201)
    async def submit_request(request: Request) -> Any:
        try:
            message = await signed_body(request, "release request")
            return {"request_id": await bookkeeping(service.submit_request, message)}
        except StrongroomError as exc:
            return error_response(exc)

    @router.get("/v1/custody/requests/{request_id}")
    def request_status(request_id: str) -> Any:
        try:
            return service.status(request_id)
        except StrongroomError as exc:
            return error_response(exc)

    @router.post("/v1/custody/requests/{request_id}/approvals", status_code=201)
    async def approve(request_id: str, request: Request) -> Any:
        try:
            message = await signed_body(request, "approval")
            return {"approvals": await bookkeeping(service.submit_approval, request_id, message)}
        except StrongroomError as exc:
            return error_response(exc)

    @router.post("/v1/custody/requests/{request_id}/release")
    async def release(request_id: str, request: Request) -> Any:
        """The wrapped key for the requesting host; ``Server-Timing`` gives the server's own time for it."""
        start = time.perf_counter()
        try:
            fetch = await signed_body(request, "release fetch")
            loop = asyncio.get_running_loop()
            bundle = await loop.run_in_executor(release_pool, release_first, service.release, request_id, fetch)
        except StrongroomError as exc:
            return error_response(exc)
        timing = f"release;dur={(time.perf_counter() - start) * 1e3:.2f}"
        return JSONResponse(bundle, headers={"Server-Timing": timing})

    @router.post("/v1/custody/requests/{request_id}/loaded", status_code=201)
    async def loaded(request_id: str, request: Request) -> Any:
        try:
            message = await signed_body(request, "model.loaded")
            return await bookkeeping(service.record_load, request_id, message)
        except StrongroomError as exc:
            return error_response(exc)

    @router.post("/v1/custody/pending")
    async def pending(request: Request) -> Any:
        """Pending requests for a person, who proves who they are by signing the query."""
        try:
            query = await signed_body(request, "pending query")
            payload = query.payload
            if payload.get("type") != PENDING_QUERY_TYPE or not isinstance(payload.get("person"), str):
                raise MessageError("pending query: malformed")
            check_window(payload, clock(), "pending query")
            query.verify(service.registry.get(payload["person"]).verifier, "pending query")
            return {"pending": await bookkeeping(service.pending, payload["person"])}
        except StrongroomError as exc:
            return error_response(exc)

    @router.post("/v1/people/changes", status_code=201)
    async def change_person(request: Request) -> Any:
        """A clearance change signed by an authorised security officer, logged as person.changed."""
        try:
            message = await signed_body(request, "person change")
            if not isinstance(message.payload.get("change"), dict):
                raise MessageError("person change: malformed")
            check_officer(message, PERSON_CHANGE_TYPE, "person change")
            return await bookkeeping(service.change_person, message.payload["change"], message)
        except StrongroomError as exc:
            return error_response(exc)

    @router.post("/v1/custody/models", status_code=201)
    async def register_model(request: Request) -> Any:
        """Register a model for custody: its id, wrapped data key, release policy and provenance."""
        try:
            message = await signed_body(request, "model registration")
            fields = {"type", "model_id", "key", "policy", "provenance", "nonce", "issued_at", "expires_at"}
            if set(message.payload) != fields:
                raise MessageError(f"model registration: fields must be exactly {', '.join(sorted(fields))}")
            check_officer(message, REGISTRATION_TYPE, "model registration")
            return await bookkeeping(service.register_signed, message)
        except StrongroomError as exc:
            return error_response(exc)
        except ValueError as exc:
            return JSONResponse({"error": f"model registration: {exc}"}, status_code=400)

    @router.get("/v1/people/{person_id}")
    def standing(person_id: str) -> Any:
        try:
            return service.registry.standing(person_id, clock()).to_json()
        except StrongroomError as exc:
            return error_response(exc)

    return router
