"""DSSE envelopes inside Sigstore bundles (v0.3), as ``model-signing`` writes them for key-based signing.

The bundle carries the public key only as a hint (SHA-256 of its PEM), the envelope one signature over
DSSE's pre-authentication encoding (PAE) of the payload. Older model-signing bundles carry the PEM itself
(``publicKey.rawBytes``) and, before 1.0, signed a buggy PAE; both are accepted when verifying.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from strongroom.manifest.errors import MalformedSignatureError, SignatureInvalidError, UnknownSignerError
from strongroom.signing import BadSignatureError, Signer, Verifier

PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    head = f"DSSEv1 {len(payload_type)} {payload_type} {len(payload)} ".encode()
    return head + payload


def pae_legacy(payload: bytes) -> bytes:
    """The malformed PAE model-signing 0.x signed (its bytes repr was formatted into the string)."""
    return f"DSSEV1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(payload)} {payload!r}".encode()


def key_hint(verifier: Verifier) -> str:
    """model-signing's public key identifier: SHA-256 of the PEM SubjectPublicKeyInfo, hex."""
    return hashlib.sha256(verifier.pem()).hexdigest()


def make_bundle(payload: bytes, signer: Signer) -> dict[str, Any]:
    """A Sigstore bundle holding a DSSE envelope signed by ``signer``."""
    signature = signer.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(signer.verifier)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }


@dataclass(frozen=True)
class Bundle:
    """The parts of a bundle verification needs."""

    payload: bytes
    signature: bytes
    hint: str | None
    raw_public_key: bytes | None


def _b64(value: Any, what: str, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedSignatureError(f"{where}: {what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignatureError(f"{where}: {what} is not valid base64") from None


def parse_bundle(data: bytes, where: str) -> Bundle:
    """Parse a bundle's JSON; every structural problem is a MalformedSignatureError naming the field."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedSignatureError(f"{where}: not valid JSON") from None
    if not isinstance(raw, dict):
        raise MalformedSignatureError(f"{where}: not a JSON object")
    if raw.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise MalformedSignatureError(f"{where}: mediaType is {raw.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE}")
    envelope = raw.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise MalformedSignatureError(f"{where}: no dsseEnvelope (only DSSE bundles are supported)")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise MalformedSignatureError(
            f"{where}: payloadType is {envelope.get('payloadType')!r}, expected {PAYLOAD_TYPE}"
        )
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise MalformedSignatureError(f"{where}: the envelope must hold exactly one signature")
    payload = _b64(envelope.get("payload"), "dsseEnvelope.payload", where)
    signature = _b64(signatures[0].get("sig"), "dsseEnvelope.signatures[0].sig", where)
    material = raw.get("verificationMaterial")
    if not isinstance(material, dict):
        raise MalformedSignatureError(f"{where}: no verificationMaterial")
    public = material.get("publicKey")
    if not isinstance(public, dict):
        raise MalformedSignatureError(
            f"{where}: verificationMaterial has no publicKey (certificate and Sigstore-identity bundles are not "
            "supported; Strongroom verifies key-based signatures)"
        )
    hint = public.get("hint")
    if hint is not None and not isinstance(hint, str):
        raise MalformedSignatureError(f"{where}: publicKey.hint is not a string")
    raw_key = _b64(public["rawBytes"], "publicKey.rawBytes", where) if "rawBytes" in public else None
    return Bundle(payload, signature, hint, raw_key)


def verify_bundle(bundle: Bundle, verifier: Verifier, where: str) -> bytes:
    """Check the bundle names the trusted key and its signature verifies; return the payload."""
    expected = key_hint(verifier)
    if bundle.hint and not hmac.compare_digest(bundle.hint, expected):
        raise UnknownSignerError(
            f"{where}: signed by key {bundle.hint[:16]}…, not the trusted key {expected[:16]}… (unknown signer)"
        )
    if bundle.raw_public_key is not None:
        try:
            named = Verifier.from_pem(bundle.raw_public_key, f"{where}: publicKey.rawBytes")
        except Exception:
            named = None
        if named is None or named.key_id != verifier.key_id:
            raise UnknownSignerError(f"{where}: carries another public key than the trusted one (unknown signer)")
    for message in (pae(PAYLOAD_TYPE, bundle.payload), pae_legacy(bundle.payload)):
        try:
            verifier.verify(bundle.signature, message)
            return bundle.payload
        except BadSignatureError:
            continue
    if bundle.hint or bundle.raw_public_key is not None:
        raise SignatureInvalidError(f"{where}: signature does not verify under the trusted key (altered or forged)")
    raise UnknownSignerError(f"{where}: signature does not verify under the trusted key (unknown signer, or altered)")
