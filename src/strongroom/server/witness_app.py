"""The witness HTTP service: C2SP tlog-witness ``POST /add-checkpoint``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from strongroom.ledger.witness import Witness

MAX_REQUEST = 1 << 20


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="Strongroom witness")

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> PlainTextResponse:
        raw = await request.body()
        if len(raw) > MAX_REQUEST:
            return PlainTextResponse("request too large", status_code=413)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return PlainTextResponse("request is not UTF-8", status_code=400)
        reply = witness.add_checkpoint(text)
        media = "text/x.tlog.size" if reply.status == 409 else "text/plain"
        return PlainTextResponse(reply.body, status_code=reply.status, media_type=media)

    @app.get("/witness.vkey")
    def vkey() -> PlainTextResponse:
        return PlainTextResponse(witness.signer.verifier.vkey + "\n")

    return app
