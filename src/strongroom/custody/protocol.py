"""Custody's wire protocol: every message, typed, parsed and checked once from its signed form.

Release requests (by a person, for an enrolled host, whose identity key vouches for the ephemeral key the
data key will be sealed to), approvals and denials, the host's fetch and load report, an approver's
pending query, and officers' co-signed administrative changes. Parsing checks fields, formats and the
validity window's shape; whether a message is fresh at a given instant and whose key must have signed it
are the service's decisions (``CustodyService``, ``strongroom.custody.state``), because the answer depends on
the ledger. Host, approver, CLI and server code build and read messages here, never from service internals.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from strongroom.attest.errors import AttestError
from strongroom.attest.quote import Quote
from strongroom.canonical_json import canonical_json
from strongroom.custody.attestation import FetchEvidence, parse_golden, parse_manufacturer_ca
from strongroom.custody.envelope import (
    CoSigned,
    SignedMessage,
    b64_bytes,
    check_fields,
    check_fresh,
    format_time,
    hex_text,
    load_json,
    model_id,
    nonce,
    text,
    utc_now,
    window,
)
from strongroom.custody.errors import MessageError
from strongroom.custody.policy import ModelPolicy
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.provider import WrappedKey
from strongroom.keys.shamir import ReencryptedShare
from strongroom.signing import SigningKey, SigningKeyError, Verifier

REQUEST_TYPE = "strongroom.release-request/v2"
HOST_KEY_TYPE = "strongroom.host-ephemeral-key/v1"
APPROVAL_TYPE = "strongroom.release-approval/v1"
FETCH_TYPE = "strongroom.release-fetch/v1"
LOADED_TYPE = "strongroom.model-loaded/v2"
PENDING_QUERY_TYPE = "strongroom.pending-query/v1"
SHARE_TYPE = "strongroom.share-delivery/v1"
ADMIN_TYPE = "strongroom.admin-change/v1"
DEFAULT_LIFETIME = timedelta(hours=1)
SHORT_LIFETIME = timedelta(minutes=5)

WINDOW = frozenset({"nonce", "issued_at", "expires_at"})


@dataclass(frozen=True)
class Window:
    """A message's single-use nonce and validity window."""

    nonce: str
    issued_at: datetime
    expires_at: datetime

    @classmethod
    def parse(cls, payload: dict[str, Any], what: str) -> Window:
        issued, expires = window(payload, what)
        return cls(nonce(payload, what), issued, expires)

    def check_fresh(self, now: datetime, what: str) -> None:
        check_fresh(self.issued_at, self.expires_at, now, what)


def _window(lifetime: timedelta, now: datetime | None = None) -> dict[str, str]:
    issued = now or utc_now()
    return {
        "nonce": secrets.token_hex(16),
        "issued_at": format_time(issued),
        "expires_at": format_time(issued + lifetime),
    }


def _typed(payload: dict[str, Any], expected: str, fields: frozenset[str], required: frozenset[str], what: str) -> None:
    check_fields(payload, fields, required, what)
    if payload["type"] != expected:
        raise MessageError(f"{what}: type must be {expected}")


# -- release request --------------------------------------------------------------------------------


def host_key_statement(host_id: str, ephemeral: bytes, model: str, requester: str, request_nonce: str) -> bytes:
    """What a host signs to vouch that an ephemeral X25519 key is its own, for one request."""
    return canonical_json(
        {
            "type": HOST_KEY_TYPE,
            "host_id": host_id,
            "ephemeral": base64.b64encode(ephemeral).decode(),
            "model_id": model,
            "requester": requester,
            "nonce": request_nonce,
        }
    )


@dataclass(frozen=True)
class ReleaseRequest:
    """A person's signed request that an enrolled host receive a model's data key."""

    signed: SignedMessage
    model_id: str
    purpose: str
    requester: str
    host_id: str
    host_key_id: str
    ephemeral: bytes
    host_proof: bytes
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "model_id", "purpose", "requester", "host", *WINDOW})
    HOST_FIELDS: ClassVar[frozenset[str]] = frozenset({"host_id", "key_id", "ephemeral", "proof"})

    @property
    def request_id(self) -> str:
        return self.signed.digest

    @classmethod
    def parse(cls, signed: SignedMessage) -> ReleaseRequest:
        what, payload = "release request", signed.payload
        _typed(payload, REQUEST_TYPE, cls.FIELDS, cls.FIELDS, what)
        host = payload["host"]
        if not isinstance(host, dict):
            raise MessageError(f"{what}: host must be an object")
        check_fields(host, cls.HOST_FIELDS, cls.HOST_FIELDS, f"{what} host")
        return cls(
            signed,
            model_id(payload, what),
            text(payload, "purpose", what, 1000),
            text(payload, "requester", what, 128),
            text(host, "host_id", what, 128),
            hex_text(host, "key_id", what, exact=64),
            b64_bytes(host, "ephemeral", what, 32),
            b64_bytes(host, "proof", what, 64),
            Window.parse(payload, what),
        )

    def host_statement(self) -> bytes:
        return host_key_statement(self.host_id, self.ephemeral, self.model_id, self.requester, self.window.nonce)

    def verify_host_proof(self, host: Verifier) -> None:
        """The enrolled host's identity key vouches for the ephemeral key the data key will be sealed to."""
        from strongroom.signing import BadSignatureError

        if host.key_id != self.host_key_id:
            raise MessageError(f"release request: names host key {self.host_key_id[:16]}, not the enrolled one")
        try:
            host.verify(self.host_proof, self.host_statement())
        except BadSignatureError:
            raise MessageError(
                "release request: the host's signature over its ephemeral key does not verify "
                "(the key would go to a machine that is not the enrolled host)"
            ) from None


def new_request(
    *,
    model_id: str,
    purpose: str,
    requester: str,
    host_id: str,
    host_identity: SigningKey,
    host_ephemeral: bytes,
    lifetime: timedelta = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A request payload with the host's proof over its ephemeral key (the requester then signs it)."""
    timing = _window(lifetime, now)
    proof = host_identity.sign(host_key_statement(host_id, host_ephemeral, model_id, requester, timing["nonce"]))
    return {
        "type": REQUEST_TYPE,
        "model_id": model_id,
        "purpose": purpose,
        "requester": requester,
        "host": {
            "host_id": host_id,
            "key_id": host_identity.key_id,
            "ephemeral": base64.b64encode(host_ephemeral).decode(),
            "proof": base64.b64encode(proof).decode(),
        },
        **timing,
    }


# -- approval -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """An approver's signed decision on one request."""

    signed: SignedMessage
    request_id: str
    model_id: str
    approver: str
    decision: Literal["approve", "deny"]
    reason: str | None
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"type", "request_id", "model_id", "approver", "decision", "reason", *WINDOW}
    )

    @property
    def approves(self) -> bool:
        return self.decision == "approve"

    @classmethod
    def parse(cls, signed: SignedMessage) -> Approval:
        what, payload = "approval", signed.payload
        _typed(payload, APPROVAL_TYPE, cls.FIELDS, cls.FIELDS - {"reason"}, what)
        decision = payload["decision"]
        if decision not in ("approve", "deny"):
            raise MessageError(f"{what}: decision must be approve or deny")
        return cls(
            signed,
            hex_text(payload, "request_id", what, exact=64),
            model_id(payload, what),
            text(payload, "approver", what, 128),
            decision,
            text(payload, "reason", what, 1000) if "reason" in payload else None,
            Window.parse(payload, what),
        )


def new_approval(
    *,
    request: ReleaseRequest,
    approver: str,
    decision: str = "approve",
    reason: str | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A fresh approval (or denial) payload bound to one request's id."""
    payload: dict[str, Any] = {
        "type": APPROVAL_TYPE,
        "request_id": request.request_id,
        "model_id": request.model_id,
        "approver": approver,
        "decision": decision,
        **_window(lifetime, now),
    }
    if reason:
        payload["reason"] = reason
    return payload


# -- a custodian's key share, for a logged release ------------------------------------------------------


@dataclass(frozen=True)
class ShareDelivery:
    """A custodian's share of a split data key, re-encrypted to the host of one release that is already on
    the ledger (at ``release_index``): shares exist only after the decision is durable."""

    signed: SignedMessage
    request_id: str
    release_index: int
    custodian: str
    share: ReencryptedShare
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "request_id", "release_index", "custodian", "share", *WINDOW})

    @classmethod
    def parse(cls, signed: SignedMessage) -> ShareDelivery:
        what, payload = "share delivery", signed.payload
        _typed(payload, SHARE_TYPE, cls.FIELDS, cls.FIELDS, what)
        index = payload["release_index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MessageError(f"{what}: release_index must be a ledger index")
        try:
            share = ReencryptedShare.from_json(payload["share"])
        except KeyProviderError as exc:
            raise MessageError(f"{what}: malformed custodian share: {exc}") from None
        return cls(
            signed,
            hex_text(payload, "request_id", what, exact=64),
            index,
            text(payload, "custodian", what, 128),
            share,
            Window.parse(payload, what),
        )


def new_share_delivery(
    request_id: str, release_index: int, custodian: str, share: ReencryptedShare, signer: SigningKey
) -> SignedMessage:
    payload = {
        "type": SHARE_TYPE,
        "request_id": request_id,
        "release_index": release_index,
        "custodian": custodian,
        "share": share.to_json(),
        **_window(SHORT_LIFETIME),
    }
    return SignedMessage.sign(payload, signer)


# -- the host's fetch and load report -----------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """The requesting host's signed demand for the released key: proof that it, and no other, collects; for
    a model that requires attestation, with its TPM quote (``strongroom.custody.attestation``)."""

    signed: SignedMessage
    request_id: str
    window: Window
    attestation: FetchEvidence | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "request_id", "attestation", *WINDOW})

    @classmethod
    def parse(cls, signed: SignedMessage) -> Fetch:
        what = "release fetch"
        _typed(signed.payload, FETCH_TYPE, cls.FIELDS, cls.FIELDS - {"attestation"}, what)
        evidence = signed.payload.get("attestation")
        return cls(
            signed,
            hex_text(signed.payload, "request_id", what, exact=64),
            Window.parse(signed.payload, what),
            None if evidence is None else FetchEvidence.parse(evidence, what),
        )


def fetch_window() -> dict[str, str]:
    """A fetch's nonce and validity window (made first when a quote must bind the nonce)."""
    return _window(SHORT_LIFETIME)


def new_fetch(
    request_id: str,
    signer: SigningKey,
    attestation: FetchEvidence | None = None,
    window: dict[str, str] | None = None,
) -> SignedMessage:
    payload: dict[str, Any] = {"type": FETCH_TYPE, "request_id": request_id, **(window or fetch_window())}
    if attestation is not None:
        payload["attestation"] = attestation.to_json()
    return SignedMessage.sign(payload, signer)


@dataclass(frozen=True)
class LoadReport:
    """The host's signed statement that it loaded a released model, verified, under one release's nonce; for
    an attested release, with a TPM quote over the model PCR."""

    signed: SignedMessage
    request_id: str
    model_id: str
    host_id: str
    release_nonce: str
    loaded_at: datetime
    quote: Quote | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"type", "request_id", "model_id", "host_id", "release_nonce", "loaded_at", "quote"}
    )

    @classmethod
    def parse(cls, signed: SignedMessage) -> LoadReport:
        what, payload = "model.loaded", signed.payload
        _typed(payload, LOADED_TYPE, cls.FIELDS, cls.FIELDS - {"quote"}, what)
        from strongroom.custody.envelope import parse_time

        quote = None
        if "quote" in payload:
            if not isinstance(payload["quote"], dict):
                raise MessageError(f"{what}: quote must be an object")
            try:
                quote = Quote.from_json(canonical_json(payload["quote"]))
            except AttestError as exc:
                raise MessageError(f"{what}: {exc}") from None
        return cls(
            signed,
            hex_text(payload, "request_id", what, exact=64),
            model_id(payload, what),
            text(payload, "host_id", what, 128),
            hex_text(payload, "release_nonce", what, exact=32),
            parse_time(payload["loaded_at"], "loaded_at"),
            quote,
        )


def new_load_report(
    request_id: str, model: str, host_id: str, release_nonce: str, signer: SigningKey, quote: Quote | None = None
) -> SignedMessage:
    payload: dict[str, Any] = {
        "type": LOADED_TYPE,
        "request_id": request_id,
        "model_id": model,
        "host_id": host_id,
        "release_nonce": release_nonce,
        "loaded_at": format_time(utc_now()),
    }
    if quote is not None:
        payload["quote"] = json.loads(quote.to_json())
    return SignedMessage.sign(payload, signer)


# -- an approver's pending query ---------------------------------------------------------------------


@dataclass(frozen=True)
class PendingQuery:
    """A person's signed question "what may I decide on?" (pending requests reveal who wants what)."""

    signed: SignedMessage
    person: str
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "person", *WINDOW})

    @classmethod
    def parse(cls, signed: SignedMessage) -> PendingQuery:
        what = "pending query"
        _typed(signed.payload, PENDING_QUERY_TYPE, cls.FIELDS, cls.FIELDS, what)
        return cls(signed, text(signed.payload, "person", what, 128), Window.parse(signed.payload, what))


def new_pending_query(person: str, signer: SigningKey) -> SignedMessage:
    return SignedMessage.sign({"type": PENDING_QUERY_TYPE, "person": person, **_window(SHORT_LIFETIME)}, signer)


# -- an incident step, acknowledged by whoever holds its role --------------------------------------------

ACK_TYPE = "strongroom.incident-step/v1"


@dataclass(frozen=True)
class StepAck:
    """The holder of a playbook role saying they did one step of an incident's playbook, at this time. The
    ``actor`` is a person id (signed with their key) or ``officer`` (signed with an officer's key)."""

    signed: SignedMessage
    incident: str
    step: str
    role: str
    actor: str
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "incident", "step", "role", "actor", "note", *WINDOW})

    @classmethod
    def parse(cls, signed: SignedMessage) -> StepAck:
        what, payload = "incident step", signed.payload
        _typed(payload, ACK_TYPE, cls.FIELDS, cls.FIELDS - {"note"}, what)
        if "note" in payload:
            text(payload, "note", what, 1000)
        return cls(
            signed,
            hex_text(payload, "incident", what, exact=16),
            text(payload, "step", what, 128),
            text(payload, "role", what, 64),
            text(payload, "actor", what, 128),
            Window.parse(payload, what),
        )


def new_step_ack(incident: str, step: str, role: str, actor: str, signer: SigningKey, note: str = "") -> SignedMessage:
    payload = {
        "type": ACK_TYPE,
        "incident": incident,
        "step": step,
        "role": role,
        "actor": actor,
        **_window(SHORT_LIFETIME),
    }
    if note:
        payload["note"] = note
    return SignedMessage.sign(payload, signer)


# -- authenticated reads ----------------------------------------------------------------------------

READ_TYPE = "strongroom.read/v1"
OFFICER_READER = "officer"
READ_KINDS = ("person", "details", "request", "host")


@dataclass(frozen=True)
class ReadQuery:
    """A signed request to read something about a person, a release request or a host. ``reader`` is a person
    id (signed with their key) or ``officer`` (signed with an officer's key); ``subject`` is
    ``KIND:ID`` with KIND one of person, details (officers only), request, host."""

    signed: SignedMessage
    reader: str
    kind: str
    subject: str
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "reader", "subject", *WINDOW})

    @classmethod
    def parse(cls, signed: SignedMessage) -> ReadQuery:
        what = "read"
        _typed(signed.payload, READ_TYPE, cls.FIELDS, cls.FIELDS, what)
        kind, sep, subject = text(signed.payload, "subject", what, 200).partition(":")
        if not sep or kind not in READ_KINDS or not subject:
            raise MessageError(f"{what}: subject must be KIND:ID with KIND one of {', '.join(READ_KINDS)}")
        return cls(signed, text(signed.payload, "reader", what, 128), kind, subject, Window.parse(signed.payload, what))


def new_read_query(reader: str, subject: str, signer: SigningKey) -> SignedMessage:
    return SignedMessage.sign(
        {"type": READ_TYPE, "reader": reader, "subject": subject, **_window(SHORT_LIFETIME)}, signer
    )


# -- administrative changes ---------------------------------------------------------------------------

PERSON_ACTIONS = {
    f"person.{kind}" for kind in ("enrol", "position", "vetted", "agreement", "signal", "clear", "offboard")
}
HOST_ACTIONS = {"host.enrol", "host.retire"}
MODEL_ACTIONS = {"model.register", "model.policy", "model.rekey", "model.fingerprint"}
INCIDENT_ACTIONS = {"incident.declare", "incident.lift"}
PLAYBOOK_ACTION = "incident.playbook"
PLAYBOOK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
APPENDER_ACTIONS = {"appender.enrol", "appender.retire"}  # keys that write egress and location entries
EGRESS_ACTIONS = {"egress.clear"}  # clearing a host's egress alarm
LANDMARK_ACTIONS = {f"landmark.{kind}" for kind in ("enrol", "retire", "flag", "clear")}
LOCATION_ACTIONS = {"location.clear"}  # clearing a host's INCONSISTENT location verdict (an alarm)
TIE_ACTIONS = APPENDER_ACTIONS | EGRESS_ACTIONS | LANDMARK_ACTIONS | LOCATION_ACTIONS
ATTEST_ACTIONS = {"policy.golden", "policy.tpm-ca"}
ACTIONS = (
    PERSON_ACTIONS
    | HOST_ACTIONS
    | MODEL_ACTIONS
    | INCIDENT_ACTIONS
    | TIE_ACTIONS
    | ATTEST_ACTIONS
    | {"authority.change", PLAYBOOK_ACTION}
)
SCOPE_KINDS = ("model", "host", "person")
SEVERITIES = ("suspected", "confirmed")


@dataclass(frozen=True)
class IncidentChange:
    """A declaration (one officer: it only takes access away) or a lift (the quorum) of an incident. Its
    scope is ``all``, or ``model:ID``, ``host:ID`` or ``person:ID``: while it is open, no release in scope."""

    incident: str
    change: Literal["declare", "lift"]
    scope: str
    severity: str

    @property
    def scope_kind(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def scope_id(self) -> str:
        return self.scope.partition(":")[2]

    @classmethod
    def parse(cls, action: str, change: dict[str, Any]) -> IncidentChange:
        what = action
        if action == "incident.declare":
            check_fields(change, {"change", "incident", "scope", "severity", "summary", "playbook"},
                         {"change", "incident", "scope", "severity"}, what)  # fmt: skip
            scope = text(change, "scope", what, 200)
            kind, sep, subject = scope.partition(":")
            if scope != "all" and (not sep or kind not in SCOPE_KINDS or not subject):
                raise MessageError(f"{what}: scope must be all, or model:ID, host:ID or person:ID")
            if change["severity"] not in SEVERITIES:
                raise MessageError(f"{what}: severity must be one of {', '.join(SEVERITIES)}")
            if "playbook" in change:
                text(change, "playbook", what, 200)
            return cls(hex_text(change, "incident", what, exact=16), "declare", scope, change["severity"])
        check_fields(change, {"change", "incident", "reason"}, {"change", "incident"}, what)
        return cls(hex_text(change, "incident", what, exact=16), "lift", "", "")


@dataclass(frozen=True)
class ModelRekey:
    """A model's data key replaced after a re-seal (incident rotation): the new wrapped key, bound to the same
    model id, and the digest of the key it retires (which must be the one registered now)."""

    model_id: str
    key: WrappedKey
    retires: str
    reason: str


@dataclass(frozen=True)
class FingerprintChoice:
    """A model's fingerprint policy (``strongroom.incident.fingerprint.FingerprintPolicy`` as JSON, without the
    model id) and the commitment to the custody-held fingerprint key every release mark derives from."""

    model_id: str
    policy: dict[str, Any]
    key_commitment: str


@dataclass(frozen=True)
class PlaybookChange:
    """An organisation's own playbook (CACAO 2.0 JSON), adopted under a name by threshold officers."""

    name: str
    document: dict[str, Any]


@dataclass(frozen=True)
class ModelRegistration:
    """A model's id, its wrapped data key (bound to that id), its release policy and its provenance."""

    policy: ModelPolicy
    key: WrappedKey
    provenance: dict[str, Any]

    @property
    def model_id(self) -> str:
        return self.policy.model_id


@dataclass(frozen=True)
class Officer:
    """A security officer: a name and a public key (Ed25519 or ECDSA, perhaps held in an HSM)."""

    name: str
    verifier: Verifier

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "public_key": self.verifier.pem().decode()}

    @classmethod
    def parse(cls, value: Any, what: str) -> Officer:
        if not isinstance(value, dict) or set(value) != {"name", "public_key"}:
            raise MessageError(f"{what}: each officer is {{name, public_key}}")
        try:
            return cls(
                text(value, "name", what, 128), Verifier.from_pem(text(value, "public_key", what, 4096).encode())
            )
        except SigningKeyError as exc:
            raise MessageError(f"{what}: officer {value.get('name')!r}: {exc}") from None


@dataclass(frozen=True)
class Authority:
    """Who administers custody: the officers, how many must co-sign a change, and the access agreement
    every person must have signed (its digest), if any."""

    officers: tuple[Officer, ...]
    threshold: int
    required_agreement: str | None = None

    def __post_init__(self) -> None:
        ids = [o.verifier.key_id for o in self.officers]
        if len(set(ids)) != len(ids):
            raise MessageError("authority: an officer key appears twice")
        if not isinstance(self.threshold, int) or isinstance(self.threshold, bool) or self.threshold < 1:
            raise MessageError("authority: threshold must be a positive integer")
        if self.threshold > len(self.officers):
            raise MessageError(f"authority: threshold {self.threshold} exceeds the {len(self.officers)} officers")
        if self.required_agreement is not None and not _agreement_digest(self.required_agreement):
            raise MessageError("authority: required_agreement must be sha256:<64 hex>")

    @property
    def keys(self) -> dict[str, Verifier]:
        return {o.verifier.key_id: o.verifier for o in self.officers}

    def name_of(self, key_id: str) -> str:
        return next((o.name for o in self.officers if o.verifier.key_id == key_id), key_id[:16])

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"officers": [o.to_json() for o in self.officers], "threshold": self.threshold}
        if self.required_agreement is not None:
            body["required_agreement"] = self.required_agreement
        return body

    @classmethod
    def parse(cls, value: Any, what: str = "authority") -> Authority:
        if not isinstance(value, dict):
            raise MessageError(f"{what}: must be an object")
        check_fields(value, {"officers", "threshold", "required_agreement"}, {"officers", "threshold"}, what)
        officers = value["officers"]
        if not isinstance(officers, list) or not 1 <= len(officers) <= 64:
            raise MessageError(f"{what}: officers must be a list of 1 to 64")
        agreement = value.get("required_agreement")
        if agreement is not None and not isinstance(agreement, str):
            raise MessageError(f"{what}: required_agreement must be a string")
        return cls(tuple(Officer.parse(o, what) for o in officers), value["threshold"], agreement)


def _agreement_digest(value: str) -> bool:
    return value.startswith("sha256:") and len(value) == 71 and all(c in "0123456789abcdef" for c in value[7:])


@dataclass(frozen=True)
class AdminChange:
    """A change to who may get keys (people, hosts, models, policies, the officers themselves), co-signed
    by the officers who agree to exactly this change. The subject is parsed by action: a registry change
    body for people and hosts, a registration, a policy, or a new authority."""

    cosigned: CoSigned
    action: str
    change: dict[str, Any]
    window: Window

    FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "action", "change", *WINDOW})

    @property
    def change_id(self) -> str:
        return self.cosigned.digest

    @classmethod
    def parse(cls, cosigned: CoSigned) -> AdminChange:
        what, payload = "administrative change", cosigned.payload
        _typed(payload, ADMIN_TYPE, cls.FIELDS, cls.FIELDS, what)
        action, change = payload["action"], payload["change"]
        if not isinstance(action, str) or action not in ACTIONS:
            raise MessageError(f"{what}: unknown action {action!r} (one of {', '.join(sorted(ACTIONS))})")
        if not isinstance(change, dict):
            raise MessageError(f"{what}: change must be an object")
        if (
            action in PERSON_ACTIONS | HOST_ACTIONS | INCIDENT_ACTIONS | TIE_ACTIONS
            and change.get("change") != action.split(".", 1)[1]
        ):
            raise MessageError(f"{what}: change.change must be {action.split('.', 1)[1]!r} for {action}")
        parsed = cls(cosigned, action, change, Window.parse(payload, what))
        if action == "model.register":
            parsed.registration()
        elif action == "model.policy":
            parsed.policy()
        elif action == "authority.change":
            parsed.authority()
        elif action in INCIDENT_ACTIONS:
            parsed.incident()
        elif action == "model.rekey":
            parsed.rekey()
        elif action == "model.fingerprint":
            parsed.fingerprint()
        elif action == PLAYBOOK_ACTION:
            parsed.playbook()
        elif action in TIE_ACTIONS:
            from strongroom.custody.projection import parse_tie_change

            parse_tie_change(action, change)
        elif action == "policy.golden":
            parse_golden(change)
        elif action == "policy.tpm-ca":
            parse_manufacturer_ca(change)
        return parsed

    @property
    def subject(self) -> str:
        """The person, host or model the change is about."""
        if self.action == "authority.change":
            return "authority"
        if self.action in INCIDENT_ACTIONS:
            return f"incident:{self.change.get('incident')}"
        if self.action == PLAYBOOK_ACTION:
            return f"playbook:{self.change.get('name')}"
        if self.action in APPENDER_ACTIONS:
            return f"appender:{self.change.get('appender')}"
        if self.action in LOCATION_ACTIONS:
            return f"location:{self.change.get('host')}:{self.change.get('verdict')}"
        if self.action in LANDMARK_ACTIONS:
            return f"landmark:{self.change.get('landmark')}"
        if self.action in EGRESS_ACTIONS:
            return f"egress:{self.change.get('host')}:{self.change.get('alarm_id')}"
        if self.action == "policy.golden":
            return f"host-class:{self.change.get('host_class')}"
        if self.action == "policy.tpm-ca":
            return "tpm-manufacturer-ca"
        return str(self.change.get("person") or self.change.get("host") or self.change.get("model_id"))

    def registration(self) -> ModelRegistration:
        what, change = "model registration", self.change
        check_fields(change, {"model_id", "key", "policy", "provenance"}, {"model_id", "key", "policy"}, what)
        provenance = change.get("provenance", {})
        if not isinstance(provenance, dict):
            raise MessageError(f"{what}: provenance must be an object")
        try:
            key = WrappedKey.from_json(change["key"])
        except KeyProviderError as exc:
            raise MessageError(f"{what}: {exc}") from None
        return ModelRegistration(ModelPolicy.from_rules(model_id(change, what), change["policy"]), key, provenance)

    def policy(self) -> ModelPolicy:
        check_fields(self.change, {"model_id", "policy"}, {"model_id", "policy"}, "policy change")
        return ModelPolicy.from_rules(model_id(self.change, "policy change"), self.change["policy"])

    def authority(self) -> Authority:
        return Authority.parse(self.change, "authority change")

    def incident(self) -> IncidentChange:
        return IncidentChange.parse(self.action, self.change)

    def rekey(self) -> ModelRekey:
        what, change = "model rekey", self.change
        check_fields(change, {"model_id", "key", "retires", "reason"}, {"model_id", "key", "retires"}, what)
        try:
            key = WrappedKey.from_json(change["key"])
        except KeyProviderError as exc:
            raise MessageError(f"{what}: {exc}") from None
        retires = text(change, "retires", what, 71)
        if not _agreement_digest(retires):
            raise MessageError(f"{what}: retires must be the retired key's digest, sha256:<64 hex>")
        reason = text(change, "reason", what, 1000) if "reason" in change else ""
        return ModelRekey(model_id(change, what), key, retires, reason)

    def fingerprint(self) -> FingerprintChoice:
        what, change = "fingerprint policy", self.change
        check_fields(change, {"model_id", "policy", "key_commitment"}, {"model_id", "policy", "key_commitment"}, what)
        policy, commitment = change["policy"], text(change, "key_commitment", what, 71)
        if not isinstance(policy, dict) or "model_id" in policy:
            raise MessageError(f"{what}: policy must be an object (without model_id)")
        if not _agreement_digest(commitment):
            raise MessageError(f"{what}: key_commitment must be sha256:<64 hex>")
        return FingerprintChoice(model_id(change, what), policy, commitment)

    def playbook(self) -> PlaybookChange:
        what, change = "playbook change", self.change
        check_fields(change, {"name", "document"}, {"name", "document"}, what)
        name = text(change, "name", what, 64)
        if not PLAYBOOK_NAME.fullmatch(name):
            raise MessageError(f"{what}: name must be lower-case letters, digits and hyphens")
        document = change["document"]
        if not isinstance(document, dict) or document.get("type") != "playbook":
            raise MessageError(f"{what}: document must be a CACAO playbook object")
        return PlaybookChange(name, document)


@dataclass(frozen=True)
class AdminSubmission:
    """A co-signed change and the openings of its private fields (kept off the log; see
    ``strongroom.custody.details``): what officers pass to each other and send to the service."""

    cosigned: CoSigned
    openings: dict[str, dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"change": self.cosigned.to_json(), "openings": self.openings}

    @classmethod
    def from_json(cls, value: Any, what: str = "administrative change") -> AdminSubmission:
        value = load_json(value, what)
        if not isinstance(value, dict) or set(value) != {"change", "openings"}:
            raise MessageError(f"{what}: must be an object with exactly change and openings")
        openings = value["openings"]
        if not isinstance(openings, dict) or not all(isinstance(v, dict) for v in openings.values()):
            raise MessageError(f"{what}: openings must map field names to {{salt, value}}")
        return cls(CoSigned.from_json(value["change"], what), openings)

    def cosign(self, officer: SigningKey) -> AdminSubmission:
        return AdminSubmission(self.cosigned.cosign(officer), self.openings)


def new_admin_change(
    action: str, change: dict[str, Any], officer: SigningKey, lifetime: timedelta = DEFAULT_LIFETIME
) -> CoSigned:
    """The first officer's signature on a change; others add theirs with ``CoSigned.cosign``."""
    payload = {"type": ADMIN_TYPE, "action": action, "change": change, **_window(lifetime)}
    AdminChange.parse(CoSigned(payload, ()))  # refuse to sign a malformed change
    return CoSigned.sign(payload, officer)
