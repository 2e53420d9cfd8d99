"""A host's pending release, kept between ``strongroom request`` and ``strongroom load``.

The ephemeral X25519 private key is stored encrypted (AES-256-GCM) under a key derived from the host's
Ed25519 identity key (HKDF-SHA256), so the session file is no more exposed than the host key itself. A host
key inside a PKCS#11 token never shows its bytes: the session key is then derived from the token's Ed25519
signature over a fixed statement (RFC 8032 signatures are deterministic; the statement is no JSON, so it equals
no message the host ever sends), which only a holder of the token and its PIN can make again.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.atomic import write_atomic
from strongroom.canonical_json import canonical_json
from strongroom.custody.errors import CustodyError
from strongroom.custody.host import HostSession
from strongroom.memory import wipe
from strongroom.signing import Signer, SigningKey

FORMAT = "strongroom-host-session/v1"
TOKEN_KEY_STATEMENT = b"strongroom/host-session/v1: derive this host's session file key\n"


def _session_key(identity: SigningKey) -> bytearray:
    if identity.key_type != "ed25519":
        raise CustodyError("host identities are Ed25519 keys")
    if isinstance(identity, Signer):
        if not isinstance(identity.private, ed25519.Ed25519PrivateKey):
            raise CustodyError("host identities are Ed25519 keys")
        raw = bytearray(
            identity.private.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        )
        info = b"strongroom/host-session/v1"
    else:
        raw = bytearray(identity.sign(TOKEN_KEY_STATEMENT))
        again = bytearray(identity.sign(TOKEN_KEY_STATEMENT))
        try:
            if again != raw:
                raise CustodyError("this host key's Ed25519 signatures are not deterministic: no session key derives")
        finally:
            wipe(again)
        info = b"strongroom/host-session/v1/token-signature"
    try:
        return bytearray(HKDF(hashes.SHA256(), 32, None, info).derive(bytes(raw)))
    finally:
        wipe(raw)


def save_session(path: Path, session: HostSession, request_id: str, model_id: str, server: str) -> None:
    key = _session_key(session.identity)
    header = {
        "format": FORMAT,
        "request_id": request_id,
        "model_id": model_id,
        "host_id": session.host_id,
        "server": server,
    }
    raw = session.ephemeral.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    try:
        sealed = AESGCM(bytes(key)).encrypt(nonce, raw, canonical_json(header))
    finally:
        wipe(key)
    write_atomic(path, canonical_json({**header, "ephemeral": base64.b64encode(nonce + sealed).decode()}) + b"\n")


def load_session(path: Path, identity: SigningKey) -> tuple[HostSession, dict[str, Any]]:
    try:
        record = json.loads(Path(path).read_bytes())
        header = {k: record[k] for k in ("format", "request_id", "model_id", "host_id", "server")}
        blob = base64.b64decode(record["ephemeral"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CustodyError(f"{path}: not a readable host session file ({exc.__class__.__name__})") from None
    if header["format"] != FORMAT:
        raise CustodyError(f"{path}: not a {FORMAT} file")
    key = _session_key(identity)
    try:
        raw = AESGCM(bytes(key)).decrypt(blob[:12], blob[12:], canonical_json(header))
    except InvalidTag:
        raise CustodyError(f"{path}: session does not open with this host key (another host, or tampered)") from None
    finally:
        wipe(key)
    return HostSession(header["host_id"], identity, X25519PrivateKey.from_private_bytes(raw)), header
