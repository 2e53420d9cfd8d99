"""An approver's workflow: see what is pending (with the host's name and key fingerprint), decide, and, as a
custodian of a split key, attach one's key share re-encrypted to the requesting host.

For a model whose data key is split among custodians (Shamir), each approving custodian opens their own
share with their X25519 key and seals it to the host's ephemeral key, bound to this exact request, model
and host; the share rides inside the signed approval. The custodian's tool refuses a share for any model
other than the one the request names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError
from strongroom.custody.protocol import ReleaseRequest, new_approval, new_pending_query
from strongroom.custody.release_crypto import release_info
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.hpke import public_from_bytes
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import custodian_reencrypt_share
from strongroom.signing import SigningKey


@dataclass(frozen=True)
class Pending:
    """One request waiting for this approver's decision."""

    request: ReleaseRequest
    received_at: str
    host: dict[str, Any]  # name, site, owner, key fingerprint: what the approver checks
    key: WrappedKey | None  # the split key, for custodians

    @property
    def request_id(self) -> str:
        return self.request.request_id


def share_for_request(request: ReleaseRequest, key: WrappedKey, custodian: X25519PrivateKey) -> dict[str, Any]:
    """My share of ``key``, re-encrypted to the host the request names, for exactly that request and model."""
    context = release_info(request.request_id, request.model_id, request.host_id)
    host_public = public_from_bytes(request.ephemeral)
    share = custodian_reencrypt_share(key, custodian, host_public, context, model_id=request.model_id)
    return share.to_json()


class Approver:
    """One person deciding on release requests through a Strongroom server."""

    def __init__(
        self, client: CustodyClient, person: str, key: SigningKey, custodian_key: X25519PrivateKey | None = None
    ) -> None:
        self.client = client
        self.person = person
        self.key = key
        self.custodian_key = custodian_key

    def pending(self) -> list[Pending]:
        items = self.client.pending(new_pending_query(self.person, self.key))
        out = []
        for item in items:
            try:
                request = ReleaseRequest.parse(SignedMessage.from_json(item["request"], "pending request"))
                key = WrappedKey.from_json(item["key"]) if "key" in item else None
                out.append(Pending(request, str(item["received_at"]), dict(item["host"]), key))
            except (KeyError, TypeError, KeyProviderError) as exc:
                raise CustodyError(f"server sent a malformed pending request: {exc}") from None
        return out

    def find(self, prefix: str) -> Pending:
        """The one pending request whose id starts with ``prefix``."""
        matches = [p for p in self.pending() if p.request_id.startswith(prefix)]
        if len(matches) != 1:
            raise CustodyError(f"no single pending request starting with {prefix!r} for {self.person}")
        return matches[0]

    def decide(self, pending: Pending, decision: str = "approve", reason: str | None = None) -> int:
        """Sign and send a decision on exactly this request; a custodian of a split key adds their share."""
        share = None
        if decision == "approve" and self.custodian_key is not None:
            if pending.key is None:
                raise CustodyError("this model's key is not split among custodians: approve without a custodian key")
            share = share_for_request(pending.request, pending.key, self.custodian_key)
        payload = new_approval(
            request=pending.request, approver=self.person, decision=decision, reason=reason, share=share
        )
        return self.client.approve(pending.request_id, SignedMessage.sign(payload, self.key), share)


__all__ = ["Approver", "Pending", "share_for_request"]
