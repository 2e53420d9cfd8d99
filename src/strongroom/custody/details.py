"""Personnel details kept off the public log: the log carries salted commitments, the openings stay private.

A person's name, position, the kind and detail of a continuous-evaluation signal, a reviewer's finding and
an offboarding reason are nobody's business but the officers'. In an administrative change these fields
are replaced by ``commit:sha256:<hex>``, the SHA-256 of the RFC 8785 JSON of ``{"salt", "value"}`` with a
fresh 16-byte salt, and the officers sign the change with the commitments in it. The openings (salt and
value) travel beside the change to the service, which checks them against the commitments and keeps them in
its private store; an officer (or an auditor given them) can check each one against the log. What the
decision needs (person id, key, tier, custodian flag, vetting date, signal ids, agreements) stays in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.custody.errors import MessageError
from strongroom.people import SignalKind

PRIVATE_FIELDS: dict[str, tuple[str, ...]] = {
    "person.enrol": ("name", "position"),
    "person.position": ("position",),
    "person.signal": ("kind", "detail"),
    "person.clear": ("finding",),
    "person.offboard": ("reason",),
    "incident.declare": ("summary",),
    "incident.lift": ("reason",),
}
COMMITMENT = re.compile(r"commit:sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Opening:
    """The salt and value behind one commitment."""

    salt: str
    value: str

    def commitment(self) -> str:
        digest = hashlib.sha256(canonical_json({"salt": self.salt, "value": self.value})).hexdigest()
        return f"commit:sha256:{digest}"

    def to_json(self) -> dict[str, str]:
        return {"salt": self.salt, "value": self.value}

    @classmethod
    def parse(cls, value: Any, what: str) -> Opening:
        if not isinstance(value, dict) or set(value) != {"salt", "value"}:
            raise MessageError(f"{what}: an opening is {{salt, value}}")
        salt, plain = value["salt"], value["value"]
        if not isinstance(salt, str) or not isinstance(plain, str) or len(plain) > 1000:
            raise MessageError(f"{what}: salt and value must be strings (value at most 1000 characters)")
        try:
            if len(base64.b64decode(salt, validate=True)) != 16:
                raise ValueError
        except ValueError:
            raise MessageError(f"{what}: the salt must be 16 bytes in base64") from None
        return cls(salt, plain)


def conceal(action: str, change: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Opening]]:
    """The change with its private fields replaced by commitments, and the openings."""
    concealed, openings = dict(change), {}
    for name in PRIVATE_FIELDS.get(action, ()):
        if name in change:
            opening = Opening(base64.b64encode(secrets.token_bytes(16)).decode(), str(change[name]))
            concealed[name], openings[name] = opening.commitment(), opening
    return concealed, openings


def check_openings(action: str, change: dict[str, Any], openings: dict[str, Any]) -> dict[str, Opening]:
    """Every private field of ``change`` is a commitment, and ``openings`` opens exactly those."""
    private = PRIVATE_FIELDS.get(action, ())
    extra = sorted(set(openings) - set(private))
    if extra:
        raise MessageError(f"{action}: {extra[0]!r} is not a private field")
    checked: dict[str, Opening] = {}
    for name in private:
        if name not in change:
            continue
        committed = change[name]
        if not isinstance(committed, str) or not COMMITMENT.fullmatch(committed):
            raise MessageError(f"{action}: {name!r} must be a commitment, not in clear (the log is public)")
        if name not in openings:
            raise MessageError(f"{action}: no opening for {name!r}")
        opening = Opening.parse(openings[name], f"{action} {name}")
        if not hmac.compare_digest(opening.commitment(), committed):
            raise MessageError(f"{action}: the opening of {name!r} does not match its commitment")
        if action == "person.signal" and name == "kind" and opening.value not in {k.value for k in SignalKind}:
            raise MessageError(f"{action}: unknown signal kind {opening.value!r}")
        checked[name] = opening
    return checked
