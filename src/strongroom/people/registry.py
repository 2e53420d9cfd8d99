"""The SenL clearance registry, rebuilt from signed ``person.changed`` events.

The registry keeps no state of its own: it is a projection of the ledger's ``person.changed`` entries,
so an auditor replaying the log gets exactly the clearances the custody service acted on, at any time.
Each change is a JSON body (see ``strongroom.people.changes``) applied in ledger order.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.people.errors import PeopleError, UnknownPersonError
from strongroom.people.signals import SignalKind
from strongroom.people.tiers import CUSTODIAN_TIER, check_tier, rescreen_due
from strongroom.signing import BadSignatureError, SigningKeyError, Verifier


@dataclass
class OpenSignal:
    signal_id: str
    kind: str  # a SignalKind value, or a commitment to one when the details are kept off the log
    detail: str
    observed_on: date


@dataclass
class Person:
    """One enrolled person and everything the registry knows about them."""

    person_id: str
    name: str
    verifier: Verifier
    position: str
    tier: int
    custodian: bool
    vetted_on: date | None
    rescreen_required: bool = False
    agreements: dict[str, str] = field(default_factory=dict)
    signals: dict[str, OpenSignal] = field(default_factory=dict)
    offboarded: bool = False

    @property
    def key_id(self) -> str:
        return self.verifier.key_id


@dataclass(frozen=True)
class Standing:
    """A person's effective clearance at one moment: tier 0 means no access, with the reasons why."""

    person_id: str
    tier: int
    effective_tier: int
    custodian: bool
    reasons: tuple[str, ...]

    @property
    def active(self) -> bool:
        return self.effective_tier > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "person": self.person_id,
            "tier": self.tier,
            "effective_tier": self.effective_tier,
            "custodian": self.custodian,
            "reasons": list(self.reasons),
        }


def agreement_message(person_id: str, agreement: str) -> bytes:
    """The bytes a person signs to accept an access agreement (identified by its digest)."""
    return canonical_json({"type": "strongroom.access-agreement/v1", "person": person_id, "agreement": agreement})


KINDS = frozenset(kind.value for kind in SignalKind)
COMMITTED = "commit:sha256:"  # a private field kept off the log (strongroom.custody.details)


class Registry:
    """Current state of every person, built by applying changes in order."""

    def __init__(self, required_agreement: str | None = None) -> None:
        self.people: dict[str, Person] = {}
        self.required_agreement = required_agreement

    def get(self, person_id: str) -> Person:
        try:
            return self.people[person_id]
        except KeyError:
            raise UnknownPersonError(f"no person {person_id!r} is enrolled") from None

    def by_key(self, key_id: str) -> Person | None:
        return next((p for p in self.people.values() if p.key_id == key_id), None)

    def apply(self, change: dict[str, Any]) -> Person:
        """Apply one validated ``person.changed`` body; raises PeopleError (and changes nothing) if it is refused."""
        kind = _text(change, "change")
        person_id = _text(change, "person")
        if kind == "enrol":
            return self._enrol(person_id, change)
        person = self.get(person_id)
        if person.offboarded:
            raise PeopleError(f"{person_id}: offboarded; enrol again under a new id")
        if kind == "position":
            position, tier, custodian = _text(change, "position"), _tier(change), _flag(change, "custodian")
            if tier > person.tier:
                person.rescreen_required = True
            person.position, person.tier = position, tier
            person.custodian = custodian and tier == CUSTODIAN_TIER
        elif kind == "vetted":
            person.vetted_on = _date(change, "vetted_on")
            person.rescreen_required = False
        elif kind == "agreement":
            agreement = _text(change, "agreement")
            signature = _b64(change, "signature")
            try:
                person.verifier.verify(signature, agreement_message(person_id, agreement))
            except BadSignatureError:
                raise PeopleError(f"{person_id}: access agreement signature does not verify") from None
            person.agreements[agreement] = change["signature"]
        elif kind == "signal":
            signal_id = _text(change, "signal_id")
            if signal_id in person.signals:
                raise PeopleError(f"{person_id}: signal {signal_id} is already open")
            signal_kind = _text(change, "kind")
            if signal_kind not in KINDS and not signal_kind.startswith(COMMITTED):
                raise PeopleError(f"{person_id}: unknown signal kind {signal_kind!r}")
            person.signals[signal_id] = OpenSignal(
                signal_id, signal_kind, str(change.get("detail", "")), _date(change, "observed_on")
            )
        elif kind == "clear":
            signal_id = _text(change, "signal_id")
            reviewer = _text(change, "reviewer")
            if reviewer == person_id:
                raise PeopleError(f"{person_id}: a person cannot clear their own signal")
            self.get(reviewer)
            if signal_id not in person.signals:
                raise PeopleError(f"{person_id}: no open signal {signal_id}")
            del person.signals[signal_id]
        elif kind == "offboard":
            person.offboarded = True
        else:
            raise PeopleError(f"{person_id}: unknown change {kind!r}")
        return person

    def _enrol(self, person_id: str, change: dict[str, Any]) -> Person:
        if person_id in self.people:
            raise PeopleError(f"{person_id}: already enrolled")
        try:
            verifier = Verifier.from_pem(_text(change, "public_key").encode(), f"{person_id} public_key")
        except SigningKeyError as exc:
            raise PeopleError(str(exc)) from None
        if verifier.key_type != "ed25519":
            raise PeopleError(f"{person_id}: people sign with Ed25519 identities, not {verifier.key_type}")
        if self.by_key(verifier.key_id) is not None:
            raise PeopleError(f"{person_id}: this public key already belongs to another person")
        tier = _tier(change)
        person = Person(
            person_id=person_id,
            name=_text(change, "name"),
            verifier=verifier,
            position=_text(change, "position"),
            tier=tier,
            custodian=_flag(change, "custodian") and tier == CUSTODIAN_TIER,
            vetted_on=_date(change, "vetted_on"),
        )
        self.people[person_id] = person
        return person

    def standing(self, person_id: str, now: datetime) -> Standing:
        """Effective tier now: 0 while suspended, overdue, unvetted, without agreement, or offboarded."""
        person = self.get(person_id)
        reasons: list[str] = []
        if person.offboarded:
            reasons.append("offboarded")
        for signal in person.signals.values():
            kind = f"{signal.kind} " if signal.kind in KINDS else ""
            reasons.append(f"suspended: open {kind}signal {signal.signal_id}")
        if person.vetted_on is None:
            reasons.append("never vetted")
        elif person.rescreen_required:
            reasons.append("rescreen required after a change of position")
        elif now.date() > rescreen_due(person.vetted_on, person.tier):
            reasons.append(f"overdue: rescreen was due {rescreen_due(person.vetted_on, person.tier).isoformat()}")
        if self.required_agreement is not None and self.required_agreement not in person.agreements:
            reasons.append("has not signed the current access agreement")
        effective = 0 if reasons else person.tier
        return Standing(person_id, person.tier, effective, person.custodian and effective > 0, tuple(reasons))


def _text(change: dict[str, Any], name: str) -> str:
    value = change.get(name)
    if not isinstance(value, str) or not value:
        raise PeopleError(f"person change: field {name!r} missing or not a non-empty string")
    return value


def _flag(change: dict[str, Any], name: str) -> bool:
    value = change.get(name, False)
    if not isinstance(value, bool):
        raise PeopleError(f"person change: field {name!r} must be true or false")
    return value


def _tier(change: dict[str, Any]) -> int:
    try:
        return check_tier(change.get("tier"))
    except ValueError as exc:
        raise PeopleError(f"person change: {exc}") from None


def _date(change: dict[str, Any], name: str) -> date:
    try:
        return date.fromisoformat(_text(change, name))
    except ValueError:
        raise PeopleError(f"person change: field {name!r} is not an ISO date (YYYY-MM-DD)") from None


def _b64(change: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_text(change, name), validate=True)
    except ValueError:
        raise PeopleError(f"person change: field {name!r} is not base64") from None
