"""HTTP routes for custody, people, hosts and administration: parse, call ``CustodyService``, answer.

Every body is a signed message, at most 64 KiB; no authorisation is decided here. Errors are library
exceptions turned into ``{"error", "kind"}`` answers by ``strongroom.server.errors``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from strongroom.custody.envelope import MAX_MESSAGE_BYTES, SignedMessage
from strongroom.custody.protocol import AdminSubmission
from strongroom.custody.service import CustodyService
from strongroom.server.bodies import read_body
from strongroom.server.priority import ReleaseFirstGate

T = TypeVar("T")


async def _body(request: Request, what: str) -> bytes:
    """At most 64 KiB, refused (413) on its Content-Length before reading, or as soon as it streams past."""
    return await read_body(request, MAX_MESSAGE_BYTES, what)


async def signed_body(request: Request, what: str) -> SignedMessage:
    return SignedMessage.from_json(await _body(request, what), what)


def custody_router(service: CustodyService, clock: Callable[[], datetime]) -> APIRouter:
    """Routes under /v1/custody, /v1/admin, /v1/people and /v1/hosts."""
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

    @router.post("/v1/admin/changes", status_code=201)
    async def admin_change(request: Request) -> Any:
        """An administrative change co-signed by officers (people, hosts, models, policies, officers)."""
        change = AdminSubmission.from_json(await _body(request, "administrative change"))
        return await bookkeeping(service.admin, change)

    @router.post("/v1/custody/requests", status_code=201)
    async def submit_request(request: Request) -> Any:
        message = await signed_body(request, "release request")
        return {"request_id": await bookkeeping(service.submit_request, message)}

    @router.post("/v1/custody/requests/{request_id}/approvals", status_code=201)
    async def approve(request_id: str, request: Request) -> Any:
        message = await signed_body(request, "approval")
        return {"approvals": await bookkeeping(service.submit_approval, request_id, message)}

    @router.post("/v1/custody/shares/awaiting")
    async def awaiting_shares(request: Request) -> Any:
        """Logged releases of split keys a custodian (who signs the query) has not yet delivered a share for."""
        query = await signed_body(request, "query")
        return {"awaiting": await bookkeeping(service.awaiting_shares, query)}

    @router.post("/v1/custody/requests/{request_id}/shares", status_code=201)
    async def deliver_share(request_id: str, request: Request) -> Any:
        message = await signed_body(request, "share delivery")
        return {"shares": await bookkeeping(service.deliver_share, request_id, message)}

    @router.post("/v1/custody/requests/{request_id}/release")
    async def release(request_id: str, request: Request) -> Any:
        """The sealed key for the requesting host; ``Server-Timing`` gives the server's own time for it."""
        start = time.perf_counter()
        fetch = await signed_body(request, "release fetch")
        loop = asyncio.get_running_loop()
        bundle = await loop.run_in_executor(release_pool, release_first, service.release, request_id, fetch)
        timing = f"release;dur={(time.perf_counter() - start) * 1e3:.2f}"
        return JSONResponse(bundle, headers={"Server-Timing": timing})

    @router.get("/v1/custody/head")
    async def head() -> Any:
        """The ledger head a host's release quote binds (the last custody entry: index and leaf hash)."""
        return await bookkeeping(service.ledger_head)

    @router.post("/v1/custody/requests/{request_id}/loaded", status_code=201)
    async def loaded(request_id: str, request: Request) -> Any:
        message = await signed_body(request, "model.loaded")
        return await bookkeeping(service.record_load, request_id, message)

    @router.post("/v1/custody/pending")
    async def pending(request: Request) -> Any:
        """Pending requests for a person, who proves who they are by signing the query."""
        query = await signed_body(request, "pending query")
        return {"pending": await bookkeeping(service.pending, query)}

    @router.post("/v1/incidents/steps", status_code=201)
    async def acknowledge(request: Request) -> Any:
        """A playbook step of an incident, signed by whoever holds its role."""
        message = await signed_body(request, "incident step")
        return await bookkeeping(service.acknowledge, message)

    @router.post("/v1/read")
    async def read(request: Request) -> Any:
        """A person's standing or details, a request's status, a host's record: for a signed, entitled reader."""
        query = await signed_body(request, "read")
        return await bookkeeping(service.read, query)

    return router
