"""The serving host's side of a release: an ephemeral key it vouches for, the fetch, opening the key, the
load report."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.attest.binding import TpmSealedKey
from strongroom.attest.errors import AttestError
from strongroom.attest.host import HostTpm
from strongroom.attest.loader import model_measurement
from strongroom.attest.quote import load_qualifying_data, release_qualifying_data
from strongroom.custody.attestation import LAYOUT, FetchEvidence
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError
from strongroom.custody.protocol import DEFAULT_LIFETIME, fetch_window, new_fetch, new_load_report, new_request
from strongroom.custody.release_crypto import release_info
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.hpke import open_as_host
from strongroom.keys.provider import WrappedKey
from strongroom.keys.released import ReleasedKey
from strongroom.keys.shamir import ReencryptedShare, host_combine
from strongroom.memory import wipe
from strongroom.signing import SigningKey

if TYPE_CHECKING:
    from strongroom.incident.fingerprint import FingerprintPolicy, ReleaseKey


@dataclass
class HostSession:
    """One enrolled host's attempt to load one model: its identity key and a fresh ephemeral X25519 key; with
    ``tpm`` (an attested host), its TPM quotes the fetch and the load, and unseals TPM-bound keys."""

    host_id: str
    identity: SigningKey
    ephemeral: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    tpm: HostTpm | None = None

    @property
    def ephemeral_public(self) -> bytes:
        return self.ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def request_payload(
        self, model_id: str, purpose: str, requester: str, lifetime: timedelta = DEFAULT_LIFETIME
    ) -> dict[str, Any]:
        """The request the person acting through this host signs; the host has signed its ephemeral key."""
        return new_request(
            model_id=model_id,
            purpose=purpose,
            requester=requester,
            host_id=self.host_id,
            host_identity=self.identity,
            host_ephemeral=self.ephemeral_public,
            lifetime=lifetime,
        )

    def fetch(self, request_id: str, head: dict[str, Any] | None = None) -> SignedMessage:
        """Proof that this host, and no other, is collecting the release; with a TPM and the ledger ``head``
        (``CustodyClient.head``), a quote over the loader and model PCRs binding the request id, this fetch's
        nonce, the ephemeral key and that head."""
        if self.tpm is None or head is None:
            return new_fetch(request_id, self.identity)
        window = fetch_window()
        head_hash = bytes.fromhex(str(head["leaf_hash"]))
        qualifying = release_qualifying_data(
            request_id, bytes.fromhex(window["nonce"]), self.ephemeral_public, head_hash
        )
        try:
            quote = self.tpm.quote([LAYOUT.loader, LAYOUT.model], qualifying)
        except AttestError as exc:
            raise CustodyError(f"the host's TPM could not quote: {exc}") from None
        evidence = FetchEvidence(quote, int(head["index"]), head_hash)
        return new_fetch(request_id, self.identity, evidence, window)

    def open_release(self, bundle: dict[str, Any]) -> ReleasedKey:
        """Decrypt the released data key; it opens only for this host, request and model, and only if the
        wrapped key it belongs to is bound to that model."""
        if bundle.get("host_id") != self.host_id:
            raise CustodyError(f"release is for host {bundle.get('host_id')!r}, not {self.host_id!r}")
        try:
            wrapped = WrappedKey.from_json(bundle["key"])
        except (KeyError, KeyProviderError) as exc:
            raise CustodyError(f"release bundle: no usable key reference ({exc})") from None
        if wrapped.binding.model_id != bundle.get("model_id"):
            raise CustodyError(
                f"release bundle: the key is bound to {wrapped.binding.model_id}, not to {bundle.get('model_id')}"
            )
        info = release_info(bundle["request_id"], bundle["model_id"], self.host_id)
        try:
            if "shares" in bundle:
                shares = [ReencryptedShare.from_json(s) for s in bundle["shares"]]
                data_key = host_combine(wrapped, shares, self.ephemeral, info)
            else:
                data_key = open_as_host(self.ephemeral, base64.b64decode(bundle["wrapped_key"]), info)
                if bundle.get("tpm_bound"):
                    data_key = self._unseal(data_key, str(bundle["model_id"]))
        except (KeyProviderError, KeyError, ValueError) as exc:
            raise CustodyError(f"released key does not open for this host and request: {exc}") from None
        try:
            return ReleasedKey(wrapped, data_key)
        finally:
            wipe(data_key)

    def open_fingerprint(self, bundle: dict[str, Any]) -> tuple[ReleaseKey, FingerprintPolicy] | None:
        """This release's mark (``ReleaseKey``, ``FingerprintPolicy``) if the model's releases are marked, checked
        against the commitment the ledger carries for the release; None if the release is not marked."""
        mark = bundle.get("fingerprint")
        if mark is None:
            return None
        from strongroom.incident.errors import FingerprintError
        from strongroom.incident.fingerprint import FingerprintPolicy, ReleaseKey, release_commitment

        info = release_info(bundle["request_id"], bundle["model_id"], self.host_id) + b"/fingerprint"
        try:
            policy = FingerprintPolicy.from_json(mark["policy"])
            expected = release_commitment(bundle["request_id"], mark["key_commitment"], policy)
            if expected != mark["commitment"] or policy.model_id != bundle["model_id"]:
                raise CustodyError("release bundle: the mark's policy is not the one its commitment names")
            secret = open_as_host(self.ephemeral, base64.b64decode(mark["sealed"]), info)
        except (FingerprintError, KeyProviderError, KeyError, TypeError, ValueError) as exc:
            raise CustodyError(f"release bundle: the fingerprint does not open for this host: {exc}") from None
        return ReleaseKey(bundle["request_id"], secret, mark["key_commitment"]), policy  # the caller wipes it

    def _unseal(self, sealed_json: bytearray, model: str) -> bytearray:
        """Declare the model in the TPM (extend the model PCR with its measurement), then unseal the data key:
        the TPM opens it only if its PCRs are the approved state the key was bound to."""
        if self.tpm is None:
            raise CustodyError("the release is bound to a TPM and this host session has none")
        try:
            sealed = TpmSealedKey.from_json(bytes(sealed_json))
            self.tpm.extend(LAYOUT.model, model_measurement(model))
            return self.tpm.unseal(sealed)
        except AttestError as exc:
            raise CustodyError(f"the TPM-bound key does not unseal on this host in its current state: {exc}") from None

    def release_context(self, request_id: str, model_id: str) -> bytes:
        """What a custodian binds its re-encrypted share to: this request, model and host."""
        return release_info(request_id, model_id, self.host_id)

    def loaded(self, bundle: dict[str, Any]) -> SignedMessage:
        """The host's signed statement that it loaded, verified, the model of this release."""
        quote = None
        if self.tpm is not None and bundle.get("tpm_bound"):
            qualifying = load_qualifying_data(bytes.fromhex(bundle["release_nonce"]), bundle["model_id"])
            try:
                quote = self.tpm.quote([LAYOUT.loader, LAYOUT.model], qualifying)
            except AttestError as exc:
                raise CustodyError(f"the host's TPM could not quote the load: {exc}") from None
        return new_load_report(
            bundle["request_id"], bundle["model_id"], self.host_id, bundle["release_nonce"], self.identity, quote
        )
