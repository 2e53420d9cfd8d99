"""The log's side of witnessing: send each new checkpoint to the witnesses and collect their cosignatures."""

from __future__ import annotations

import threading

import httpx

from strongroom.ledger.checkpoint import SIZE
from strongroom.ledger.log import Ledger
from strongroom.ledger.witness import request_body
from strongroom.tls import ClientTls


class Witnessing:
    """Keeps, per witness, the size it last cosigned, and the cosigned note for the latest size."""

    def __init__(self, ledger: Ledger, witness_urls: list[str], timeout: float = 5.0) -> None:
        self.ledger = ledger
        self.urls = [u.rstrip("/") for u in witness_urls]
        self.timeout = timeout
        self._tls = ClientTls.from_environment().httpx_options()  # witnesses behind TLS: STRONGROOM_CA_CERT
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = dict.fromkeys(self.urls, 0)
        self._cached: tuple[int, str] | None = None

    def checkpoint(self) -> str:
        """The signed checkpoint plus every cosignature the witnesses gave for it (missing ones are skipped)."""
        note = self.ledger.checkpoint()
        if not self.urls:
            return note
        size = int(note.split("\n", 2)[1])
        with self._lock:
            if self._cached is not None and self._cached[0] == size:
                return self._cached[1]
            lines = [line for url in self.urls if (line := self._ask(url, note, size))]
            cosigned = note + "".join(lines)
            self._cached = (size, cosigned)
            return cosigned

    def _ask(self, url: str, note: str, size: int) -> str | None:
        for _ in range(2):
            old = self._sizes[url]
            proof = self.ledger.consistency_proof(old, size) if old <= size else []
            try:
                reply = httpx.post(
                    url + "/add-checkpoint",
                    content=request_body(old, proof, note),
                    timeout=self.timeout,
                    headers={"Content-Type": "text/plain"},
                    **self._tls,
                )
            except httpx.HTTPError:
                return None
            if reply.status_code == 409 and SIZE.fullmatch(reply.text.strip()):
                self._sizes[url] = int(reply.text.strip())
                continue
            if reply.status_code == 200:
                self._sizes[url] = size
                return reply.text
            return None
        return None
