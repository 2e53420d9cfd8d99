"""Ledger routes: C2SP tlog-tiles reads (checkpoint, tiles, entry bundles, vkey), proofs, queries, appends.

Full tiles and full entry bundles never change, so they are served ``immutable`` for a year; partial
tiles and the checkpoint change as the log grows and are served ``no-cache``.

Appends hold the server to what its appenders may do, cheapest check first: the body is read with a cap
(``/add`` 60,000 bytes, ``/add-bundle`` 8 MiB and at most ``MAX_BUNDLE_ENTRIES`` entries); each entry's
claimed signer and type are read without parsing or cryptography (``claimed_signer``) and refused (403) if
that key may not append that type, a bundle as soon as its first such entry arrives, before the rest is
read; an entry already logged is answered as a duplicate without verification; only then are signatures
verified, in a thread pool off the event loop (``cryptography`` releases the GIL while it verifies), one
bundle at a time per worker and stopping at its first bad entry. A refused append is answered after a short
pause (``REFUSAL_PAUSE``). docs/ledger.md lists every limit.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from strongroom.custody.errors import NotAuthorisedError
from strongroom.errors import StrongroomError
from strongroom.ledger.entries import MAX_ENTRY_BYTES, Claim, Entry, claimed_signer, parse_entry
from strongroom.ledger.errors import EntryError, LedgerError, StorageError
from strongroom.ledger.log import Ledger, Receipt
from strongroom.ledger.tiles import TILE_WIDTH, BundleReader, bundle, parse_level, parse_tile_request
from strongroom.ledger.witnessing import Witnessing
from strongroom.server.bodies import body_chunks, read_body
from strongroom.server.errors import BodyTooLargeError

IMMUTABLE = "public, max-age=31536000, immutable"
MAX_BUNDLE_BYTES = 8 << 20
# One C2SP entry bundle's worth (tlog-tiles serves entries 256 to a bundle): the unit /add-bundle reuses.
# It bounds what one request can make the server verify (256 P-521 signatures, 0.4-0.7 s of one core, for an
# appender; nothing for anyone else, who is refused on the first entry) and queue for the sequencer, while
# 64-entry bundles already carry ~4,000 appends/s here, so larger bundles would add little.
MAX_BUNDLE_ENTRIES = TILE_WIDTH
MAX_PAGE = 1_000  # /v1/entries answers at most this many entries per request
MAX_FILTER_CHARS = 256
# A refused append is answered after this pause. Refusing costs the server about what any small request costs
# (~1.5 ms of CPU here), so a client that posts refused bundles back to back would take a large share of
# the CPU from releases; the pause, which costs nothing while it waits, holds such a client to ~20 refusals
# per second per connection. (A flood over many connections is a rate limit's job, in front of the server.)
REFUSAL_PAUSE = 0.05
VERIFY_THREADS = 4
FRESH = "no-cache"


class Authorised(Protocol):
    """Who may append what (``strongroom.custody.authority.Appenders``)."""

    def refusal(self, signer: str, entry_type: str) -> str | None: ...


def _error(status: int, message: str, kind: str = "LedgerError") -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind}, status_code=status)


def _refuse(refusal: str) -> None:
    raise NotAuthorisedError(refusal)


def verify(raws: list[bytes], claims: list[Claim]) -> list[Entry]:
    """Fully verify entries whose claims were allowed, in order, stopping at the first that fails; each must
    be signed by the key and be of the type it claimed (the claims are what was authorised)."""
    entries = []
    for raw, claim in zip(raws, claims, strict=True):
        entry = parse_entry(raw)
        if entry.signer != claim.key_id or entry.type != claim.type:
            raise EntryError(f"{entry.type}: the entry's signer or type is not the one it claims")
        entries.append(entry)
    return entries


class Appends:
    """The one-entry append, shared by the lean ASGI path (``strongroom.server.lean_add``) and the FastAPI
    route: claim, authorisation, duplicate check, verification off the event loop, sequencing."""

    def __init__(self, ledger: Ledger, authorised: Callable[[], Authorised]) -> None:
        self.ledger = ledger
        self.authorised = authorised
        self.verifiers = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="strongroom-verify")

    async def verified(self, raws: list[bytes], claims: list[Claim]) -> list[Entry]:
        return await asyncio.get_running_loop().run_in_executor(self.verifiers, verify, raws, claims)

    async def sequenced(self, entries: list[Entry]) -> list[Receipt]:
        return list(await asyncio.gather(*(asyncio.wrap_future(self.ledger.submit(e)) for e in entries)))

    async def append_one(self, raw: bytes) -> Receipt:
        """Append one entry (already read, within ``MAX_ENTRY_BYTES``); a refusal is raised after the pause."""
        try:
            claim = claimed_signer(raw)
            refusal = self.authorised().refusal(claim.key_id, claim.type)
            if refusal is not None:
                _refuse(refusal)
            receipt = self.ledger.known(raw)
            if receipt is None:
                (receipt,) = await self.sequenced(await self.verified([raw], [claim]))
            return receipt
        except StrongroomError as exc:
            raw = b""
            await refused_slowly(exc)
            raise


async def refused_slowly(exc: StrongroomError) -> None:
    if not isinstance(exc, StorageError):
        await asyncio.sleep(REFUSAL_PAUSE)


def ledger_router(
    ledger: Ledger, authorised: Callable[[], Authorised], witnessing: Witnessing, appends: Appends | None = None
) -> APIRouter:
    """``authorised`` gives the appenders once per request (custody's authority model decides who may write
    what: ``Appenders.refusal``). ``appends``: the shared one-entry append (made here if not given)."""
    router = APIRouter()
    appends = appends or Appends(ledger, authorised)
    verified, sequenced = appends.verified, appends.sequenced

    @router.get("/checkpoint")
    def checkpoint() -> Response:
        return PlainTextResponse(witnessing.checkpoint(), headers={"Cache-Control": FRESH})

    @router.get("/log.vkey")
    def vkey() -> Response:
        return PlainTextResponse(ledger.signer.verifier.vkey + "\n", headers={"Cache-Control": IMMUTABLE})

    @router.get("/tile/entries/{rest:path}")
    def entry_bundle(rest: str) -> Response:
        try:
            index, width = parse_tile_request(rest)
        except LedgerError as exc:
            return _error(400, str(exc))
        start = index * TILE_WIDTH
        if start + width > ledger.size:
            return _error(404, f"entry bundle {rest[:40]} is beyond the log size {ledger.size}", "NotFound")
        data = bundle(ledger.entries(start, start + width))
        cache = IMMUTABLE if width == TILE_WIDTH else FRESH
        return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})

    @router.get("/tile/{level}/{rest:path}")
    def tile(level: str, rest: str) -> Response:
        try:
            height = parse_level(level)
            index, width = parse_tile_request(rest)
        except LedgerError as exc:
            return _error(400, str(exc))
        if ledger.available_width(height, index) < width:
            return _error(404, f"tile {height}/{rest[:40]} is beyond the log size {ledger.size}", "NotFound")
        cache = IMMUTABLE if width == TILE_WIDTH else FRESH
        return Response(
            ledger.tile(height, index, width),
            media_type="application/octet-stream",
            headers={"Cache-Control": cache},
        )

    @router.post("/add")
    async def add(request: Request) -> Response:
        """Reached only where the lean ASGI path is not installed (``create_app`` installs it)."""
        try:
            raw = await read_body(request, MAX_ENTRY_BYTES, "entry")
        except StrongroomError as exc:
            await refused_slowly(exc)
            raise
        receipt = await appends.append_one(raw)
        return JSONResponse(receipt.to_json(), status_code=201)

    @router.post("/add-bundle")
    async def add_bundle(request: Request) -> Response:
        """Many entries in one request, as a tlog-tiles entry bundle (uint16 length prefixes): all are checked
        before any is sequenced, so a bad entry rejects the whole bundle. Entries are judged as they arrive:
        the first one its signer may not append refuses the bundle before the rest is read."""
        allowed = authorised()
        reader = BundleReader(MAX_BUNDLE_ENTRIES)
        raws: list[bytes] = []
        claims: list[Claim] = []
        try:
            try:
                async for chunk in body_chunks(request, MAX_BUNDLE_BYTES, "bundle"):
                    for raw in reader.feed(chunk):
                        claim = claimed_signer(raw)
                        refusal = allowed.refusal(claim.key_id, claim.type)
                        if refusal is not None:
                            _refuse(refusal)
                        raws.append(raw)
                        claims.append(claim)
                reader.finish()
            except LedgerError as exc:
                if reader.count > MAX_BUNDLE_ENTRIES:
                    raise BodyTooLargeError(str(exc)) from None
                raise
            if not raws:
                raise EntryError("empty bundle")
            known = [ledger.known(raw) for raw in raws]
            fresh = [i for i, receipt in enumerate(known) if receipt is None]
            entries = await verified([raws[i] for i in fresh], [claims[i] for i in fresh]) if fresh else []
            for i, receipt in zip(fresh, await sequenced(entries), strict=True):
                known[i] = receipt
        except StrongroomError as exc:
            raws, claims, reader, chunk = [], [], BundleReader(), b""  # hold nothing while the refusal waits
            await refused_slowly(exc)
            raise
        return JSONResponse({"receipts": [r.to_json() for r in known if r is not None]}, status_code=201)

    @router.get("/v1/proof/inclusion")
    def inclusion(index: int, size: int) -> Response:
        try:
            proof = ledger.inclusion_proof(index, size)
            leaf = ledger.tree.levels[0][index]
        except (StrongroomError, IndexError) as exc:
            return _error(400, str(exc))
        return JSONResponse(
            {
                "index": index,
                "size": size,
                "leaf_hash": leaf.hex(),
                "proof": [base64.b64encode(h).decode() for h in proof],
            }
        )

    @router.get("/v1/proof/consistency")
    def consistency(old: int, new: int) -> Response:
        try:
            proof = ledger.consistency_proof(old, new)
        except StrongroomError as exc:
            return _error(400, str(exc))
        return JSONResponse({"old": old, "new": new, "proof": [base64.b64encode(h).decode() for h in proof]})

    @router.get("/v1/entries")
    def entries(
        type: str = "",
        model_id: str = "",
        person: str = "",
        signer: str = "",
        since: str = "",
        until: str = "",
        start: int = 0,
        limit: int = MAX_PAGE,
    ) -> Response:
        """Entries matching every filter, from index ``start`` on, at most ``limit`` (1 to 1,000) of them, as
        stored: they were verified when appended, and a reader verifies them again itself. ``next`` is where
        the following page starts (null on the last page)."""
        if start < 0 or not 1 <= limit <= MAX_PAGE:
            return _error(400, f"start must be >= 0 and limit 1 to {MAX_PAGE}", "RequestValidationError")
        filters = {"type": type, "model_id": model_id, "person": person, "signer": signer, "since": since}
        filters["until"] = until
        for name, value in filters.items():
            if len(value) > MAX_FILTER_CHARS or "\x00" in value:
                return _error(400, f"{name}: at most {MAX_FILTER_CHARS} characters, no NUL", "RequestValidationError")
        if start >= ledger.size:
            return JSONResponse({"entries": [], "next": None})
        found = ledger.query_raw(start=start, limit=limit, **filters)
        following = found[-1][0] + 1 if len(found) == limit else None
        return JSONResponse({"entries": [{"index": i, "entry": raw.decode()} for i, raw in found], "next": following})

    return router
