"""The people's side of a release: an approver sees what is pending (with the host's name and key
fingerprint) and decides; a custodian of a split key delivers their share, but only for a release the
ledger already holds.

The cryptographic quorum holds on its own: a custodian's share exists outside their key file only after
the custodian has checked, against the log's signed checkpoint, that the ``key.released`` entry for that very
request is on the ledger. Then they open their share with their X25519 key and seal it to the host's
ephemeral key named in the logged request, bound to that request, model and host. Nothing stored before the
decision lets anyone combine shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError
from strongroom.custody.protocol import (
    ReleaseRequest,
    new_approval,
    new_pending_query,
    new_share_delivery,
)
from strongroom.custody.release_crypto import release_info
from strongroom.keys.errors import KeyProviderError, ShareError
from strongroom.keys.hpke import public_from_bytes
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import ShamirBlob, custodian_reencrypt_share
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.entries import parse_entry
from strongroom.ledger.note import NoteVerifier
from strongroom.signing import SigningKey


@dataclass(frozen=True)
class Pending:
    """One request waiting for this approver's decision."""

    request: ReleaseRequest
    received_at: str
    host: dict[str, Any]  # name, site, owner, key fingerprint: what the approver checks

    @property
    def request_id(self) -> str:
        return self.request.request_id


class Approver:
    """One person deciding on release requests through a Strongroom server."""

    def __init__(self, client: CustodyClient, person: str, key: SigningKey) -> None:
        self.client = client
        self.person = person
        self.key = key

    def pending(self) -> list[Pending]:
        items = self.client.pending(new_pending_query(self.person, self.key))
        out = []
        for item in items:
            try:
                request = ReleaseRequest.parse(SignedMessage.from_json(item["request"], "pending request"))
                out.append(Pending(request, str(item["received_at"]), dict(item["host"])))
            except (KeyError, TypeError) as exc:
                raise CustodyError(f"server sent a malformed pending request: {exc}") from None
        return out

    def find(self, prefix: str) -> Pending:
        """The one pending request whose id starts with ``prefix``."""
        matches = [p for p in self.pending() if p.request_id.startswith(prefix)]
        if len(matches) > 1:
            raise CustodyError(f"{len(matches)} pending requests start with {prefix!r}: give more of the request id")
        if matches:
            return matches[0]
        status = self._status(prefix)
        if status is not None and status.get("requester") == self.person:
            raise CustodyError(
                f"{self.person} made request {prefix[:16]} and cannot approve or deny it: a requester never decides "
                "on their own request; two other cleared people must approve it"
            )
        if status is not None and status.get("state") != "pending":
            raise CustodyError(f"request {prefix[:16]} is {status.get('state')}, not pending")
        raise CustodyError(
            f"no request starting with {prefix!r} awaits {self.person}'s decision: the list holds only pending "
            "requests that someone else made and that you have not decided yet ('strongroom approvals' shows it)"
        )

    def _status(self, request_id: str) -> dict[str, Any] | None:
        """The request's status if ``request_id`` is a whole id this person may read (their own request, or one
        for a model they are cleared for); None otherwise."""
        if len(request_id) != 64:
            return None
        from strongroom.custody.protocol import new_read_query

        try:
            return self.client.read(new_read_query(self.person, f"request:{request_id}", self.key))
        except CustodyError:
            return None

    def decide(self, pending: Pending, decision: str = "approve", reason: str | None = None) -> int:
        """Sign and send a decision on exactly this request."""
        payload = new_approval(request=pending.request, approver=self.person, decision=decision, reason=reason)
        return self.client.approve(pending.request_id, SignedMessage.sign(payload, self.key))


@dataclass(frozen=True)
class Awaiting:
    """A logged release of a split key that still needs this custodian's share."""

    request: ReleaseRequest
    release_index: int
    key: WrappedKey

    @property
    def request_id(self) -> str:
        return self.request.request_id


@dataclass
class Custodian:
    """A SenL-5 custodian holding one share of split data keys (their X25519 key), who delivers it only for
    releases they have seen on the ledger, checked like an auditor: the log's key pinned, the checkpoint
    cosigned by ``min_witnesses`` of ``witnesses``, consistent with what they saw before (``audit_state``),
    and the entry included under it."""

    client: CustodyClient
    ledger: LedgerClient
    person: str
    key: SigningKey
    custodian_key: X25519PrivateKey
    audit_state: Path
    log_vkey: str
    witnesses: list[NoteVerifier] = field(default_factory=list)
    min_witnesses: int = 1

    def awaiting(self) -> list[Awaiting]:
        out = []
        for item in self.client.awaiting_shares(new_pending_query(self.person, self.key)):
            try:
                request = ReleaseRequest.parse(SignedMessage.from_json(item["request"], "logged request"))
                out.append(Awaiting(request, int(item["release_index"]), WrappedKey.from_json(item["key"])))
            except (KeyError, TypeError, ValueError, KeyProviderError) as exc:
                raise CustodyError(f"server sent a malformed awaiting release: {exc}") from None
        return out

    def holds_share(self, item: Awaiting) -> bool:
        try:
            ShamirBlob.parse(item.key).share_for(self.custodian_key.public_key())
        except ShareError:
            return False
        return True

    def deliver(self, item: Awaiting) -> int:
        """Check the release is on the ledger, then send my share re-encrypted to its host; returns how many
        shares the host can now collect."""
        self.check_logged(item)
        request = item.request
        context = release_info(request.request_id, request.model_id, request.host_id)
        share = custodian_reencrypt_share(
            item.key, self.custodian_key, public_from_bytes(request.ephemeral), context, model_id=request.model_id
        )
        delivery = new_share_delivery(request.request_id, item.release_index, self.person, share, self.key)
        return self.client.deliver_share(request.request_id, delivery)

    def deliver_all(self) -> list[tuple[str, int]]:
        """Deliver my share for every logged release of a key I hold a share of: (request id, shares now)."""
        return [(item.request_id, self.deliver(item)) for item in self.awaiting() if self.holds_share(item)]

    def check_logged(self, item: Awaiting) -> None:
        """The ``key.released`` entry at ``item.release_index`` is in the signed log and is this request's."""
        verify_log(
            self.ledger,
            self.audit_state,
            log_vkey=self.log_vkey,
            witnesses=self.witnesses,
            min_witnesses=self.min_witnesses,
            indices=[item.release_index],
        )
        entry = parse_entry(self.ledger.entries(item.release_index + 1, item.release_index)[0])
        body = entry.body
        if entry.type != "key.released" or body.get("request_id") != item.request_id:
            raise CustodyError(f"ledger entry {item.release_index} is not the release of {item.request_id[:16]}")
        if body.get("request") != item.request.signed.to_json():
            raise CustodyError(f"ledger entry {item.release_index} logged another request than the server shows")
