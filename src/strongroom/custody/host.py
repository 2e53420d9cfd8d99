"""The serving host's side of a release: an ephemeral key, the fetch, opening the key, the load report."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.errors import CustodyError
from strongroom.custody.messages import SignedMessage, format_time, new_request, utc_now
from strongroom.custody.release_crypto import release_info
from strongroom.custody.service import FETCH_TYPE, LOADED_TYPE
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.hpke import open_as_host
from strongroom.keys.provider import WrappedKey
from strongroom.keys.released import ReleasedKey
from strongroom.keys.shamir import ReencryptedShare, host_combine
from strongroom.memory import wipe
from strongroom.signing import Signer


@dataclass
class HostSession:
    """One host's attempt to load one model: its identity key and a fresh ephemeral X25519 key."""

    host_id: str
    identity: Signer
    ephemeral: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    @property
    def ephemeral_public(self) -> bytes:
        return self.ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def request_payload(
        self, model_id: str, purpose: str, requester: str, lifetime: timedelta = timedelta(hours=1)
    ) -> dict[str, Any]:
        """The request body the person acting through this host signs."""
        return new_request(
            model_id=model_id,
            purpose=purpose,
            requester=requester,
            host_id=self.host_id,
            host_identity_pem=self.identity.verifier.pem().decode(),
            host_ephemeral=self.ephemeral_public,
            lifetime=lifetime,
        )

    def fetch(self, request_id: str) -> SignedMessage:
        """Proof that this host, and no other, is collecting the release."""
        now = utc_now()
        payload = {
            "type": FETCH_TYPE,
            "request_id": request_id,
            "nonce": secrets.token_hex(16),
            "issued_at": format_time(now),
            "expires_at": format_time(now + timedelta(minutes=5)),
        }
        return SignedMessage.sign(payload, self.identity)

    def open_release(self, bundle: dict[str, Any]) -> ReleasedKey:
        """Decrypt the released data key; it opens only for this host, request and model."""
        if bundle.get("host_id") != self.host_id:
            raise CustodyError(f"release is for host {bundle.get('host_id')!r}, not {self.host_id!r}")
        info = release_info(bundle["request_id"], bundle["model_id"], self.host_id)
        wrapped = WrappedKey.from_json(bundle["key"])
        try:
            if "shares" in bundle:
                shares = [ReencryptedShare.from_json(s) for s in bundle["shares"]]
                data_key = host_combine(wrapped, shares, self.ephemeral, info)
            else:
                data_key = open_as_host(self.ephemeral, base64.b64decode(bundle["wrapped_key"]), info)
        except KeyProviderError as exc:
            raise CustodyError(f"released key does not open for this host and request: {exc}") from None
        try:
            return ReleasedKey(wrapped, data_key)
        finally:
            wipe(data_key)

    def release_context(self, request_id: str, model_id: str) -> bytes:
        """What a custodian binds its re-encrypted share to: this request, model and host."""
        return release_info(request_id, model_id, self.host_id)

    def loaded(self, request_id: str, model_id: str) -> SignedMessage:
        """The host's signed statement of the model id it verified while loading."""
        payload = {
            "type": LOADED_TYPE,
            "request_id": request_id,
            "model_id": model_id,
            "host_id": self.host_id,
            "loaded_at": format_time(utc_now()),
        }
        return SignedMessage.sign(payload, self.identity)
