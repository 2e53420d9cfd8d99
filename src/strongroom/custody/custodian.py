"""A custodian's part of a cryptographic quorum: re-encrypt my key share to the requesting host.

For a model whose data key is split among custodians (Shamir), each approving custodian opens their own
share with their X25519 key and seals it to the host's ephemeral key, bound to this exact request, model
and host. The share rides inside the signed approval; the custody service forwards shares and never sees
the key. The host combines k of them.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.custody.messages import SignedMessage
from strongroom.custody.release_crypto import release_info
from strongroom.keys.hpke import public_from_bytes
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import custodian_reencrypt_share


def share_for_request(request: SignedMessage, key: WrappedKey, custodian: X25519PrivateKey) -> dict[str, Any]:
    """My share of ``key``, re-encrypted to the host named in ``request``, as the approval's ``share``."""
    payload = request.payload
    host = payload["host"]
    context = release_info(request.digest, payload["model_id"], host["host_id"])
    host_public = public_from_bytes(base64.b64decode(host["ephemeral"]))
    return custodian_reencrypt_share(key, custodian, host_public, context).to_json()
