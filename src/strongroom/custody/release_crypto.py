"""Wrapping a released data key to a host: HPKE (RFC 9180) base mode, X25519 / HKDF-SHA256 / AES-256-GCM.

The HPKE ``info`` binds the release to its request id, model id and host id, so a wrapped key cannot be
opened for another request or by another host, even by one holding the same ephemeral key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom.canonical_json import canonical_json
from strongroom.custody.errors import CustodyError

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
INFO_TYPE = "strongroom.key-release/v1"


def release_info(request_id: str, model_id: str, host_id: str) -> bytes:
    return canonical_json({"type": INFO_TYPE, "request_id": request_id, "model_id": model_id, "host_id": host_id})


def wrap_to_host(data_key: bytes | bytearray, host_public: bytes, info: bytes) -> bytes:
    """HPKE-seal a data key to the host's ephemeral X25519 public key; returns enc || ciphertext."""
    return SUITE.encrypt(bytes(data_key), X25519PublicKey.from_public_bytes(host_public), info)


def unwrap_as_host(sealed: bytes, host_private: X25519PrivateKey, info: bytes) -> bytearray:
    """Open a released data key with the host's ephemeral private key."""
    try:
        return bytearray(SUITE.decrypt(sealed, host_private, info))
    except Exception:
        raise CustodyError("released key does not open with this host key and context") from None
