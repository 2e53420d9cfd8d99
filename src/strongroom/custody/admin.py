"""Officers' side of administration: the changes they propose, and co-signing them.

Each builder returns a ``Proposal`` (an action and its change); ``propose`` signs it as the first officer
and ``CoSigned.cosign`` adds each further officer's signature over the very same payload. The custody
service decides whether enough officers signed (``strongroom.custody.authority``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from strongroom.attest.credential import Challenge
from strongroom.attest.enrol import EnrolmentEvidence, begin_enrolment, finish_enrolment
from strongroom.attest.errors import AttestError
from strongroom.custody.attestation import tpm_enrolment
from strongroom.custody.details import conceal
from strongroom.custody.errors import CustodyError
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import DEFAULT_LIFETIME, AdminSubmission, Authority, new_admin_change
from strongroom.keys.provider import WrappedKey
from strongroom.people import SignalKind, agreement_message
from strongroom.signing import SigningKey


@dataclass(frozen=True)
class Proposal:
    """An administrative change before anyone signed it."""

    action: str
    change: dict[str, Any]


def propose(
    proposal: Proposal, officers: Sequence[SigningKey], lifetime: timedelta = DEFAULT_LIFETIME
) -> AdminSubmission:
    """The change, its personnel details replaced by commitments, signed by each of ``officers`` (one for a
    proposal others will co-sign later), with the openings of those commitments beside it."""
    if not officers:
        raise CustodyError("an administrative change needs at least one officer's signature")
    change, openings = conceal(proposal.action, proposal.change)
    signed = new_admin_change(proposal.action, change, officers[0], lifetime)
    for officer in officers[1:]:
        signed = signed.cosign(officer)
    return AdminSubmission(signed, {name: opening.to_json() for name, opening in openings.items()})


def enrol_person(
    person: str, *, name: str, public_key: str, position: str, tier: int, custodian: bool, vetted_on: date
) -> Proposal:
    return Proposal(
        "person.enrol",
        {
            "change": "enrol",
            "person": person,
            "name": name,
            "public_key": public_key,
            "position": position,
            "tier": tier,
            "custodian": custodian,
            "vetted_on": vetted_on.isoformat(),
        },
    )


def change_position(person: str, *, position: str, tier: int, custodian: bool) -> Proposal:
    change = {"change": "position", "person": person, "position": position, "tier": tier, "custodian": custodian}
    return Proposal("person.position", change)


def record_vetting(person: str, vetted_on: date) -> Proposal:
    return Proposal("person.vetted", {"change": "vetted", "person": person, "vetted_on": vetted_on.isoformat()})


def record_agreement(person: str, agreement: str, person_key: SigningKey) -> Proposal:
    """The person signs the agreement (by its digest) with their own key; officers witness the record."""
    signature = base64.b64encode(person_key.sign(agreement_message(person, agreement))).decode()
    return Proposal(
        "person.agreement", {"change": "agreement", "person": person, "agreement": agreement, "signature": signature}
    )


def raise_signal(person: str, kind: SignalKind, *, detail: str = "", observed_on: date | None = None) -> Proposal:
    """A continuous-evaluation signal: suspends the person until a reviewer clears it (one officer suffices)."""
    return Proposal(
        "person.signal",
        {
            "change": "signal",
            "person": person,
            "signal_id": "sig-" + secrets.token_hex(4),
            "kind": kind.value,
            "detail": detail,
            "observed_on": (observed_on or date.today()).isoformat(),
        },
    )


def clear_signal(person: str, signal_id: str, *, reviewer: str, finding: str = "") -> Proposal:
    change = {"change": "clear", "person": person, "signal_id": signal_id, "reviewer": reviewer, "finding": finding}
    return Proposal("person.clear", change)


def offboard(person: str, reason: str = "") -> Proposal:
    return Proposal("person.offboard", {"change": "offboard", "person": person, "reason": reason})


def enrol_host(host: str, *, name: str, site: str, owner: str, public_key: str) -> Proposal:
    change = {"change": "enrol", "host": host, "name": name, "site": site, "owner": owner, "public_key": public_key}
    return Proposal("host.enrol", change)


def enrol_attested_host(
    host: str,
    *,
    name: str,
    site: str,
    owner: str,
    public_key: str,
    host_class: str,
    evidence: EnrolmentEvidence,
    trusted_cas: Sequence[bytes],
    activate: Callable[[Challenge], bytes],
) -> Proposal:
    """A host enrolment with TPM evidence, after running credential activation against the host: the
    evidence is verified (EK chain to ``trusted_cas``, the AK's binding to ``public_key``), a challenge for the
    AK is encrypted to the EK, ``activate`` has the host's TPM answer it (``HostTpm.activate_credential``),
    and only a correct answer yields the proposal. The officers who co-sign vouch for that activation."""
    try:
        pending, challenge, secret = begin_enrolment(evidence, public_key.encode(), trusted_cas)
        enrolled = finish_enrolment(pending, secret, activate(challenge))
    except AttestError as exc:
        raise CustodyError(f"host {host}: TPM enrolment refused: {exc}") from None
    proposal = enrol_host(host, name=name, site=site, owner=owner, public_key=public_key)
    proposal.change["tpm"] = tpm_enrolment(host_class, evidence, enrolled.ak_name, challenge.to_json())
    return proposal


def golden_values(host_class: str, pcrs: Mapping[int, Sequence[bytes]]) -> Proposal:
    """Golden values of one host class (replacing the class's current ones): PCR -> allowed SHA-256 values."""
    change = {
        "host_class": host_class,
        "pcrs": {str(pcr): sorted(v.hex() for v in values) for pcr, values in pcrs.items()},
    }
    return Proposal("policy.golden", change)


def trust_manufacturer_ca(certificate_pem: bytes) -> Proposal:
    """A TPM manufacturer CA whose EK certificates hosts may enrol with."""
    return Proposal("policy.tpm-ca", {"certificate": certificate_pem.decode()})


def retire_host(host: str, reason: str = "") -> Proposal:
    return Proposal("host.retire", {"change": "retire", "host": host, "reason": reason})


def register_model(policy: ModelPolicy, key: WrappedKey, provenance: dict[str, Any] | None = None) -> Proposal:
    change = {
        "model_id": policy.model_id,
        "key": key.to_json(),
        "policy": policy.rules(),
        "provenance": provenance or {},
    }
    return Proposal("model.register", change)


def change_policy(policy: ModelPolicy) -> Proposal:
    return Proposal("model.policy", {"model_id": policy.model_id, "policy": policy.rules()})


def declare_incident(scope: str, severity: str = "suspected", summary: str = "", playbook: str = "") -> Proposal:
    """One officer freezes every release in ``scope`` (all, model:ID, host:ID, person:ID) at once."""
    change: dict[str, Any] = {
        "change": "declare",
        "incident": secrets.token_hex(8),
        "scope": scope,
        "severity": severity,
    }
    if summary:
        change["summary"] = summary
    if playbook:
        change["playbook"] = playbook
    return Proposal("incident.declare", change)


def lift_incident(incident: str, reason: str = "") -> Proposal:
    """Lifting needs threshold officers and an active custodian (``propose`` with all their keys)."""
    return Proposal("incident.lift", {"change": "lift", "incident": incident, "reason": reason})


def change_authority(authority: Authority) -> Proposal:
    return Proposal("authority.change", authority.to_json())


def rekey_model(model_id: str, key: WrappedKey, retires: str, reason: str = "") -> Proposal:
    """Replace ``model_id``'s data key with ``key`` (a re-seal's), retiring the key whose digest is ``retires``."""
    change: dict[str, Any] = {"model_id": model_id, "key": key.to_json(), "retires": retires}
    if reason:
        change["reason"] = reason
    return Proposal("model.rekey", change)


def adopt_playbook(name: str, document: dict[str, Any]) -> Proposal:
    """Adopt an organisation's own playbook (CACAO 2.0 JSON) under ``name``: threshold officers co-sign."""
    return Proposal("incident.playbook", {"name": name, "document": document})


def set_fingerprint(model_id: str, policy: dict[str, Any], key_commitment: str) -> Proposal:
    """Mark (or stop marking) ``model_id``'s releases: ``policy`` is ``FingerprintPolicy.to_json()`` without the
    model id; ``key_commitment`` names the fingerprint key the custody server holds. Threshold officers."""
    change = {"model_id": model_id, "policy": {k: v for k, v in policy.items() if k != "model_id"}}
    return Proposal("model.fingerprint", {**change, "key_commitment": key_commitment})


def enrol_appender(appender: str, public_key: str, types: Sequence[str], host: str | None = None) -> Proposal:
    """A key whose egress entries (for ``host``: its gateway) or location verdicts custody will count."""
    change: dict[str, Any] = {"change": "enrol", "appender": appender, "public_key": public_key,
                              "types": sorted(set(types))}  # fmt: skip
    if host is not None:
        change["host"] = host
    return Proposal("appender.enrol", change)


def retire_appender(appender: str, reason: str = "") -> Proposal:
    """One officer stops custody counting an appender's entries from here on."""
    return Proposal("appender.retire", {"change": "retire", "appender": appender, "reason": reason})


def clear_egress_alarm(host: str, alarm_id: str, reason: str) -> Proposal:
    """Threshold officers clear an open egress alarm so releases to the host can resume."""
    return Proposal("egress.clear", {"change": "clear", "host": host, "alarm_id": alarm_id, "reason": reason})


def clear_location_alarm(host: str, verdict_index: int, reason: str) -> Proposal:
    """Threshold officers clear a host's INCONSISTENT location verdict (ledger index) after investigating."""
    return Proposal("location.clear", {"change": "clear", "host": host, "verdict": verdict_index, "reason": reason})


def enrol_landmark(body: dict[str, Any]) -> Proposal:
    """A landmark's enrolment body (``strongroom geo landmark enrol --json``), for threshold officers."""
    return Proposal("landmark.enrol", {**body, "change": "enrol"})


def change_landmark(landmark: str, change: str, reason: str = "") -> Proposal:
    """``retire`` or ``flag`` (one officer), ``clear`` (threshold officers)."""
    return Proposal(f"landmark.{change}", {"change": change, "landmark": landmark, "reason": reason})
