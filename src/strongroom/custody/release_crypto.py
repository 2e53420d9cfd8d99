"""The context a released data key is sealed under: HPKE ``info`` binding request, model and host.

The HPKE itself (RFC 9180 base mode, X25519 / HKDF-SHA256 / AES-256-GCM) is ``strongroom.keys.hpke``;
binding the request id, model id and host id into ``info`` means a wrapped key cannot be opened for
another request or by another host, even one holding the same ephemeral key.
"""

from __future__ import annotations

from strongroom.canonical_json import canonical_json

INFO_TYPE = "strongroom.key-release/v1"


def release_info(request_id: str, model_id: str, host_id: str) -> bytes:
    return canonical_json({"type": INFO_TYPE, "request_id": request_id, "model_id": model_id, "host_id": host_id})
