"""Signed messages for officers and approvers: clearance changes, model registrations, pending queries."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from strongroom.custody.messages import SignedMessage, format_time, utc_now
from strongroom.custody.policy import ModelPolicy
from strongroom.keys.provider import WrappedKey
from strongroom.signing import Signer

PENDING_QUERY_TYPE = "strongroom.pending-query/v1"
PERSON_CHANGE_TYPE = "strongroom.person-change/v1"
REGISTRATION_TYPE = "strongroom.model-registration/v1"
SHORT_LIFETIME = timedelta(minutes=5)


def _envelope(message_type: str, fields: dict[str, Any], signer: Signer) -> SignedMessage:
    now = utc_now()
    payload = {
        "type": message_type,
        **fields,
        "nonce": secrets.token_hex(16),
        "issued_at": format_time(now),
        "expires_at": format_time(now + SHORT_LIFETIME),
    }
    return SignedMessage.sign(payload, signer)


def person_change(change: dict[str, Any], officer: Signer) -> SignedMessage:
    return _envelope(PERSON_CHANGE_TYPE, {"change": change}, officer)


def pending_query(person: str, signer: Signer) -> SignedMessage:
    return _envelope(PENDING_QUERY_TYPE, {"person": person}, signer)


def model_registration(
    policy: ModelPolicy, key: WrappedKey, provenance: dict[str, Any], officer: Signer
) -> SignedMessage:
    rules = {k: v for k, v in policy.to_json().items() if k != "model_id"}
    return _envelope(
        REGISTRATION_TYPE,
        {"model_id": policy.model_id, "key": key.to_json(), "policy": rules, "provenance": provenance},
        officer,
    )
