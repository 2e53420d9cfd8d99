"""Ledger routes: C2SP tlog-tiles reads (checkpoint, tiles, entry bundles, vkey), proofs, queries, appends.

Full tiles and full entry bundles never change, so they are served ``immutable`` for a year; partial
tiles and the checkpoint change as the log grows and are served ``no-cache``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from strongroom.custody.authority import Appenders
from strongroom.errors import StrongroomError
from strongroom.ledger.entries import MAX_ENTRY_BYTES, parse_entry
from strongroom.ledger.errors import EntryError, LedgerError, StorageError
from strongroom.ledger.log import Ledger
from strongroom.ledger.tiles import TILE_WIDTH, bundle, parse_tile_request, unbundle
from strongroom.ledger.witnessing import Witnessing

IMMUTABLE = "public, max-age=31536000, immutable"
MAX_BUNDLE_BYTES = 8 << 20
FRESH = "no-cache"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def ledger_router(ledger: Ledger, authorised: Callable[[], Appenders], witnessing: Witnessing) -> APIRouter:
    """``authorised`` gives the appenders (custody's authority model decides who may write what)."""
    router = APIRouter()

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
            return _error(404, f"entry bundle {rest} is beyond the log size {ledger.size}")
        data = bundle(ledger.entries(start, start + width))
        cache = IMMUTABLE if width == TILE_WIDTH else FRESH
        return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})

    @router.get("/tile/{level}/{rest:path}")
    def tile(level: str, rest: str) -> Response:
        if not level.isdigit() or int(level) > 63:
            return _error(400, f"malformed tile level {level!r}")
        try:
            index, width = parse_tile_request(rest)
        except LedgerError as exc:
            return _error(400, str(exc))
        if ledger.available_width(int(level), index) < width:
            return _error(404, f"tile {level}/{rest} is beyond the log size {ledger.size}")
        cache = IMMUTABLE if width == TILE_WIDTH else FRESH
        return Response(
            ledger.tile(int(level), index, width),
            media_type="application/octet-stream",
            headers={"Cache-Control": cache},
        )

    @router.post("/add")
    async def add(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_ENTRY_BYTES:
            return _error(413, f"entry larger than {MAX_ENTRY_BYTES} bytes")
        try:
            entry = parse_entry(raw)
            refusal = authorised().refusal(entry.signer, entry.type)
            if refusal is not None:
                return _error(403, refusal)
            receipt = await asyncio.wrap_future(ledger.submit(entry))
        except EntryError as exc:
            return _error(400, str(exc))
        except StorageError as exc:
            return _error(503, str(exc))
        return JSONResponse(receipt.to_json(), status_code=201)

    @router.post("/add-bundle")
    async def add_bundle(request: Request) -> Response:
        """Many entries in one request, as a tlog-tiles entry bundle (uint16 length prefixes): all are checked
        before any is sequenced, so a bad entry rejects the whole bundle."""
        raw = await request.body()
        if len(raw) > MAX_BUNDLE_BYTES:
            return _error(413, f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            parsed = [parse_entry(item) for item in unbundle(raw)]
        except (EntryError, LedgerError) as exc:
            return _error(400, str(exc))
        if not parsed:
            return _error(400, "empty bundle")
        allowed = authorised()
        for entry in parsed:
            refusal = allowed.refusal(entry.signer, entry.type)
            if refusal is not None:
                return _error(403, refusal)
        try:
            receipts = await asyncio.gather(*(asyncio.wrap_future(ledger.submit(e)) for e in parsed))
        except StorageError as exc:
            return _error(503, str(exc))
        return JSONResponse({"receipts": [r.to_json() for r in receipts]}, status_code=201)

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
        type: str = "", model_id: str = "", person: str = "", signer: str = "", since: str = "", until: str = ""
    ) -> Response:
        found = ledger.query(type=type, model_id=model_id, person=person, signer=signer, since=since, until=until)
        return JSONResponse({"entries": [{"index": i, "entry": e.raw.decode()} for i, e in found]})

    return router
