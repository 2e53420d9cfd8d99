"""The witness HTTP service: C2SP tlog-witness ``POST /add-checkpoint``.

The body is read with a cap (64 KiB: ``old N``, a consistency proof of at most 128 hashes and a signed
checkpoint need a few KiB), must be UTF-8, and is judged off the event loop (the witness verifies an Ed25519
signature and makes its state durable with an fsync). Malformed input is a 4xx with a one-line reason.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from strongroom.ledger.witness import Witness
from strongroom.server import errors
from strongroom.server.bodies import BodyLimit, read_body

MAX_REQUEST = 64 * 1024


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="Strongroom witness")
    errors.install(app)
    app.add_middleware(BodyLimit, limit=MAX_REQUEST)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> PlainTextResponse:
        raw = await read_body(request, MAX_REQUEST, "add-checkpoint request")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return PlainTextResponse("request is not UTF-8", status_code=400)
        reply = await run_in_threadpool(witness.add_checkpoint, text)
        media = "text/x.tlog.size" if reply.status == 409 else "text/plain"
        return PlainTextResponse(reply.body, status_code=reply.status, media_type=media)

    @app.get("/witness.vkey")
    def vkey() -> PlainTextResponse:
        return PlainTextResponse(witness.signer.verifier.vkey + "\n")

    return app
