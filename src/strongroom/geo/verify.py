"""From landmark reports to a verdict, a ledger statement and its opening; and the auditor's recompute.

``assess`` checks everything a verdict rests on, then calls ``region.locate``:

- each report is signed by an enrolled landmark (its key, not just its name); reports from retired or
  flagged landmarks, or from landmarks whose cross-checks failed, are left out and say why;
- each report is about this host and its **enrolled** key (``ForeignKeyError`` otherwise), in the
  statement's epoch, and every sample's answer verifies under that key for that landmark, host and epoch;
- no nonce appears twice, in one report or across reports (``ReplayError``);
- a landmark with fewer than ``min_samples`` valid samples is left out; its disk uses the smallest RTT.

``statement`` turns an assessment into the ``geo.verdict`` body (host, verdict, country, epoch, the landmark
set's digest, the commitment, the method) and the opening: a 32-byte salt and the **record** (the reports as
signed, the host's public key, the parameters, the allowed countries, the country data's digest, the landmark
set digest and the landmarks left out). The commitment is
``"sha256:" + SHA-256("strongroom-geo-commitment/v1" || 0x00 || salt || canonical_json(record))``: the public
sees the country and nothing of the RTTs, landmarks used or region, and cannot test guesses without the
salt; an auditor given the opening recomputes the verdict with ``recompute``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.geo.countries import CountryData, check_code, load_countryinfo
from strongroom.geo.errors import (
    AuditMismatchError,
    CommitmentError,
    GeoError,
    LandmarkError,
    ProtocolError,
    ReplayError,
)
from strongroom.geo.landmarks import LandmarkSet, check_id
from strongroom.geo.protocol import check_samples, epoch_now, verify_report
from strongroom.geo.region import Disk, Outcome, Parameters, Verdict, bound_km, locate
from strongroom.signing import SigningKeyError, Verifier

COMMITMENT_DOMAIN = b"strongroom-geo-commitment/v1\x00"
METHOD = "strongroom-geo/v1"
ENTRY_TYPE = "geo.verdict"
LANDMARK_ENTRY_TYPE = "geo.landmark"
UNKNOWN_COUNTRY = "ZZ"  # CLDR's "unknown region": the country field of every verdict that is not IN
MAX_REPORTS = 256
MAX_EPOCH_LAG = 2  # a fresh assessment takes reports from this many epochs ago at most


@dataclass(frozen=True)
class Assessment:
    """A verdict and everything needed to commit to it."""

    host: str
    host_key: Verifier
    epoch: int
    verdict: Verdict
    record: dict[str, Any]
    left_out: dict[str, str] = field(default_factory=dict)


def _check_reports(
    host: str,
    host_key: Verifier,
    epoch: int,
    reports: Sequence[Mapping[str, Any]],
    landmarks: LandmarkSet,
    params: Parameters,
    flagged: Mapping[str, str],
) -> tuple[list[Disk], dict[str, str]]:
    if len(reports) > MAX_REPORTS:
        raise ProtocolError(f"more than {MAX_REPORTS} reports")
    disks: list[Disk] = []
    left_out: dict[str, str] = {}
    nonces: set[str] = set()
    seen: set[str] = set()
    for value in reports:
        landmark, report = verify_report(value, landmarks)
        if landmark.landmark_id in seen:
            raise ProtocolError(f"two reports from landmark {landmark.landmark_id}")
        seen.add(landmark.landmark_id)
        if report.epoch != epoch:
            raise ProtocolError(f"report from {landmark.landmark_id} is for epoch {report.epoch}, not {epoch}")
        check_samples(report, host, host_key)
        for sample in report.samples:
            if sample.nonce in nonces:
                raise ReplayError(f"nonce {sample.nonce[:16]} is reported by two landmarks")
            nonces.add(sample.nonce)
        if landmark.retired:
            left_out[landmark.landmark_id] = "retired"
        elif landmark.flagged or landmark.landmark_id in flagged:
            left_out[landmark.landmark_id] = "flagged: " + (landmark.flagged or flagged[landmark.landmark_id])
        elif len(report.samples) < params.min_samples:
            left_out[landmark.landmark_id] = f"{len(report.samples)} valid samples, fewer than {params.min_samples}"
        else:
            disks.append(Disk(landmark.landmark_id, landmark.latitude, landmark.longitude, bound_km(report.rtt_ns)))
    return disks, left_out


def assess(
    host: str,
    host_key: Verifier,
    reports: Sequence[Mapping[str, Any]],
    landmarks: LandmarkSet,
    *,
    epoch: int | None = None,
    params: Parameters | None = None,
    countries: CountryData | None = None,
    allowed: Collection[str] | None = None,
    flagged: Mapping[str, str] | None = None,
    now_epoch: int | None = None,
) -> Assessment:
    """Check the reports (see the module doc) and compute the verdict. ``epoch`` defaults to the reports'
    (all must share it), which must be at most ``MAX_EPOCH_LAG`` epochs old."""
    check_id(host, "host id")
    params = params or Parameters()
    countries = countries or load_countryinfo()
    allowed_codes = countries.check_allowed(allowed) if allowed is not None else None
    if epoch is None:
        epochs = {r.get("report", {}).get("epoch") for r in reports if isinstance(r.get("report"), dict)}
        if len(epochs) != 1:
            raise ProtocolError("the reports must all be for one epoch")
        epoch = epochs.pop()
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise ProtocolError("report epoch must be an integer")
    current = epoch_now() if now_epoch is None else now_epoch
    if not 0 <= current - epoch <= MAX_EPOCH_LAG:
        raise ProtocolError(f"epoch {epoch} is not fresh (now {current}; at most {MAX_EPOCH_LAG} epochs old)")
    flags = dict(flagged or {})
    disks, left_out = _check_reports(host, host_key, epoch, reports, landmarks, params, flags)
    verdict = locate(disks, countries, params, allowed_codes)
    record = {
        "method": METHOD,
        "host": host,
        "host_public_key": host_key.pem().decode(),
        "epoch": epoch,
        "reports": [dict(r) for r in reports],
        "parameters": params.to_json(),
        "allowed": allowed_codes,
        "countries": countries.digest,
        "landmark_set": landmarks.digest,
        "flagged": dict(sorted(flags.items())),
    }
    return Assessment(host, host_key, epoch, verdict, record, left_out)


def commitment(salt: bytes, record: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(COMMITMENT_DOMAIN + salt + canonical_json(dict(record))).hexdigest()


@dataclass(frozen=True)
class Opening:
    """What an auditor needs to recompute a statement: the salt and the committed record."""

    salt: bytes
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"salt": self.salt.hex(), "record": self.record}

    @classmethod
    def from_json(cls, value: Any) -> Opening:
        if not isinstance(value, dict) or set(value) != {"salt", "record"}:
            raise CommitmentError("an opening has exactly salt and record")
        salt, record = value["salt"], value["record"]
        if not isinstance(salt, str) or len(salt) != 64 or not isinstance(record, dict):
            raise CommitmentError("opening salt must be 64 hex digits, record an object")
        try:
            return cls(bytes.fromhex(salt), record)
        except ValueError:
            raise CommitmentError("opening salt is not hex") from None


def statement(assessment: Assessment, salt: bytes | None = None) -> tuple[dict[str, Any], Opening]:
    """The ``geo.verdict`` body for the ledger, and its opening (keep it for auditors; never publish it)."""
    salt = secrets.token_bytes(32) if salt is None else salt
    if len(salt) != 32:
        raise GeoError("the salt is 32 bytes")
    verdict = assessment.verdict
    body = {
        "host": assessment.host,
        "verdict": verdict.outcome.value,
        "country": verdict.country if verdict.outcome is Outcome.IN and verdict.country else UNKNOWN_COUNTRY,
        "epoch": assessment.epoch,
        "landmark_set": assessment.record["landmark_set"],
        "commitment": commitment(salt, assessment.record),
        "method": METHOD,
    }
    return body, Opening(salt, assessment.record)


def check_statement(body: Mapping[str, Any]) -> tuple[str, Outcome, str, int]:
    """(host, outcome, country, epoch) of a ``geo.verdict`` body, checked for form."""
    try:
        host = check_id(body.get("host"), "host id")
    except LandmarkError as exc:
        raise GeoError(str(exc)) from None
    try:
        outcome = Outcome(str(body.get("verdict")))
    except ValueError:
        raise GeoError("verdict must be IN, INCONCLUSIVE or INCONSISTENT") from None
    country = body.get("country")
    if not isinstance(country, str):
        raise GeoError("country must be text")
    check_code(country)
    if (outcome is Outcome.IN) == (country == UNKNOWN_COUNTRY):
        raise GeoError(f"an IN verdict names a country; any other names {UNKNOWN_COUNTRY}")
    epoch = body.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise GeoError("epoch must be a non-negative integer")
    for name in ("landmark_set", "commitment"):
        value = body.get(name)
        if not isinstance(value, str) or not value.startswith("sha256:") or len(value) != 71:
            raise GeoError(f"{name} must be sha256:<64 hex digits>")
    if body.get("method") != METHOD:
        raise GeoError(f"unknown method {str(body.get('method'))[:40]!r}")
    return host, outcome, country, epoch


def recompute(
    statement: Mapping[str, Any],
    opening: Opening | Mapping[str, Any],
    landmarks: LandmarkSet,
    countries: CountryData | None = None,
    host_key: Verifier | None = None,
) -> Verdict:
    """The auditor's check: the opening matches the statement's commitment, the record was made against this
    landmark set and these country outlines, every signature in it verifies, and recomputing gives the
    statement's verdict and country. Returns the recomputed verdict (with its region); raises
    CommitmentError or AuditMismatchError (or the protocol error a record's report fails with). Give
    ``host_key`` (the host's enrolled key, from the host registry) to check the record names that key."""
    host, outcome, country, epoch = check_statement(statement)
    opened = opening if isinstance(opening, Opening) else Opening.from_json(dict(opening))
    if not hmac.compare_digest(commitment(opened.salt, opened.record), str(statement["commitment"])):
        raise CommitmentError("the opening does not match the statement's commitment")
    record = opened.record
    countries = countries or load_countryinfo()
    if record.get("method") != METHOD or record.get("host") != host or record.get("epoch") != epoch:
        raise AuditMismatchError("the record's method, host or epoch differs from the statement's")
    if record.get("landmark_set") != statement["landmark_set"] or record.get("landmark_set") != landmarks.digest:
        raise AuditMismatchError("the landmark set given is not the one the statement was computed against")
    if record.get("countries") != countries.digest:
        raise AuditMismatchError(f"the statement used other country outlines than {countries.source}")
    try:
        record_key = Verifier.from_pem(str(record.get("host_public_key")).encode(), "record host key")
    except SigningKeyError as exc:
        raise AuditMismatchError(str(exc)) from None
    if host_key is not None and host_key.key_id != record_key.key_id:
        raise AuditMismatchError(f"the record's host key is not {host}'s enrolled key")
    flagged = record.get("flagged")
    reports = record.get("reports")
    allowed = record.get("allowed")
    if (
        not isinstance(flagged, dict)
        or not isinstance(reports, list)
        or not (allowed is None or isinstance(allowed, list))
    ):
        raise AuditMismatchError("the record is malformed")
    again = assess(
        host,
        record_key,
        reports,
        landmarks,
        epoch=epoch,
        params=Parameters.from_json(record.get("parameters")),
        countries=countries,
        allowed=allowed,
        flagged=flagged,
        now_epoch=epoch,
    )
    if again.record != record:
        raise AuditMismatchError("the record does not rebuild to itself")
    found = again.verdict
    expected = country if outcome is Outcome.IN else None
    if found.outcome is not outcome or found.country != expected:
        raise AuditMismatchError(f"the statement says {outcome.value}({country}); the record gives {found.label()}")
    return found
