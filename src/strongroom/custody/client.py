"""An HTTP client for the custody, people and host routes of ``strongroom serve``."""

from __future__ import annotations

from typing import Any

import httpx

from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import (
    AlreadyExistsError,
    AwaitingSharesError,
    CustodyError,
    MessageError,
    NotAuthorisedError,
    NotFoundError,
    PolicyError,
    ReleaseConflictError,
    UnavailableError,
    UnverifiableLedgerError,
)
from strongroom.custody.protocol import AdminSubmission
from strongroom.tls import ClientTls

_KINDS: dict[str, type[CustodyError]] = {
    kind.__name__: kind
    for kind in (
        MessageError,
        NotAuthorisedError,
        NotFoundError,
        AlreadyExistsError,
        ReleaseConflictError,
        UnavailableError,
        UnverifiableLedgerError,
    )
}


_BY_STATUS: dict[int, type[CustodyError]] = {404: NotFoundError, 403: NotAuthorisedError, 503: UnavailableError}


class CustodyClient:
    """Posts signed messages to a Strongroom server and turns error replies into typed custody errors."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        options = ClientTls.from_environment().httpx_options()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False, **options)

    def _post(self, path: str, message: SignedMessage | AdminSubmission) -> dict[str, Any]:
        try:
            reply = self._http.post(path, json=message.to_json())
        except httpx.HTTPError as exc:
            raise UnavailableError(f"{self.base_url}: unreachable: {exc}") from None
        return self._decode(reply)

    def _get(self, path: str) -> dict[str, Any]:
        try:
            reply = self._http.get(path)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"{self.base_url}: unreachable: {exc}") from None
        return self._decode(reply)

    def _decode(self, reply: httpx.Response) -> dict[str, Any]:
        try:
            data = reply.json()
        except ValueError:
            raise CustodyError(f"{self.base_url}: HTTP {reply.status_code} with a non-JSON body") from None
        if reply.status_code == 202 and isinstance(data, dict) and data.get("kind") == "AwaitingSharesError":
            raise AwaitingSharesError(str(data.get("error")), int(data["delivered"]), int(data["threshold"]))
        if reply.status_code >= 400:
            detail = data.get("error") or data.get("detail") if isinstance(data, dict) else data
            kind = data.get("kind") if isinstance(data, dict) else None
            message = f"server refused (HTTP {reply.status_code}): {detail}"
            if kind == "PolicyError":
                raise PolicyError([str(detail)], message)
            default = _BY_STATUS.get(reply.status_code, CustodyError)
            raise _KINDS.get(str(kind), default)(message)
        if not isinstance(data, dict):
            raise CustodyError(f"{self.base_url}: unexpected reply")
        return data

    def admin(self, change: AdminSubmission) -> dict[str, Any]:
        """Submit an officer-co-signed administrative change (with the openings of its private details)."""
        return self._post("/v1/admin/changes", change)

    def submit_request(self, message: SignedMessage) -> str:
        return str(self._post("/v1/custody/requests", message)["request_id"])

    def acknowledge(self, step: SignedMessage) -> dict[str, Any]:
        """Send a signed incident-step acknowledgement (``strongroom.custody.protocol.new_step_ack``)."""
        return self._post("/v1/incidents/steps", step)

    def read(self, query: SignedMessage) -> dict[str, Any]:
        """A signed read (``strongroom.custody.protocol.new_read_query``): standing, details, status, host."""
        return self._post("/v1/read", query)

    def approve(self, request_id: str, message: SignedMessage) -> int:
        return int(self._post(f"/v1/custody/requests/{request_id}/approvals", message)["approvals"])

    def awaiting_shares(self, query: SignedMessage) -> list[dict[str, Any]]:
        return list(self._post("/v1/custody/shares/awaiting", query)["awaiting"])

    def deliver_share(self, request_id: str, delivery: SignedMessage) -> int:
        return int(self._post(f"/v1/custody/requests/{request_id}/shares", delivery)["shares"])

    def release(self, request_id: str, fetch: SignedMessage) -> dict[str, Any]:
        return self._post(f"/v1/custody/requests/{request_id}/release", fetch)

    def head(self) -> dict[str, Any]:
        """The ledger head a release quote binds: ``{"index", "leaf_hash"}``."""
        return self._get("/v1/custody/head")

    def loaded(self, request_id: str, message: SignedMessage) -> dict[str, Any]:
        return self._post(f"/v1/custody/requests/{request_id}/loaded", message)

    def pending(self, query: SignedMessage) -> list[dict[str, Any]]:
        return list(self._post("/v1/custody/pending", query)["pending"])

    def close(self) -> None:
        self._http.close()
