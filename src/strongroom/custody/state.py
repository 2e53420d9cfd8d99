"""Custody's state as a projection of the ledger, and the authority model enforced on every entry.

``CustodyState`` is what the custody service knows: the officers, people, hosts, registered models and
their keys, releases and loads. It is rebuilt by replaying the log (``replay``), and the live service
changes it only through the same functions replay uses: an administrative change is ``prepare``d
(authorised and validated against the state, changing nothing), logged, then committed. Replay accepts an
entry only if its writer and authorisation hold (``strongroom.custody.authority``) and, for a release, only
if the decision function allows it again; anything else is reported by index, never applied. The offline
auditor runs exactly this code.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from strongroom.custody.attestation import (
    AttestationOutcome,
    AttestedHost,
    AttestPolicy,
    FetchEvidence,
    attest_load,
    attest_release,
    parse_golden,
    parse_manufacturer_ca,
    parse_tpm_enrolment,
    quoted_pcrs,
)
from strongroom.custody.authority import (
    CUSTODIAN_COSIGNED_ACTIONS,
    ENTRY_FOR_ACTION,
    SERVICE_TYPES,
    officers_needed,
)
from strongroom.custody.conditions import egress_reasons, location_reasons
from strongroom.custody.decision import Decision, evaluate
from strongroom.custody.envelope import CLOCK_SKEW, CoSigned, SignedMessage, format_time, parse_time
from strongroom.custody.errors import (
    AlreadyExistsError,
    CustodyError,
    MessageError,
    NotAuthorisedError,
    NotFoundError,
    UnverifiableEntryError,
)
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.projection import (
    MAX_LAG,
    PROJECTED_TYPES,
    AlarmClearance,
    AppenderChange,
    AppenderRecord,
    Ignored,
    LocationClearance,
    Projection,
    parse_tie_change,
)
from strongroom.custody.protocol import (
    OFFICER_READER,
    PLAYBOOK_ACTION,
    TIE_ACTIONS,
    AdminChange,
    Approval,
    Authority,
    LoadReport,
    ReleaseRequest,
    StepAck,
)
from strongroom.errors import StrongroomError
from strongroom.geo.errors import LandmarkError
from strongroom.geo.landmarks import LandmarkSet
from strongroom.hosts import Host, HostError, HostRegistry
from strongroom.keys.provider import WrappedKey
from strongroom.ledger.entries import Entry
from strongroom.people import PeopleError, Registry

SHAMIR = "shamir"


def key_digest(key: WrappedKey) -> str:
    """A wrapped key's identity: SHA-256 over provider, KEK id and blob (a blob registered twice is refused)."""
    h = hashlib.sha256()
    for part in (key.provider.encode(), key.key_id.encode(), key.blob):
        h.update(len(part).to_bytes(4, "big") + part)
    return "sha256:" + h.hexdigest()


def key_reference(key: WrappedKey) -> dict[str, str]:
    """How entries name a registered key: provider, KEK id and digest (never the blob itself)."""
    return {"provider": key.provider, "key_id": key.key_id, "digest": key_digest(key)}


@dataclass(frozen=True)
class RegisteredModel:
    policy: ModelPolicy
    key: WrappedKey
    index: int


@dataclass(frozen=True)
class ReleaseRecord:
    """A logged release: what a load report and a repeated fetch are checked against."""

    request_id: str
    model_id: str
    host_id: str
    release_nonce: str
    index: int
    quoted: dict[int, bytes] | None = None  # the PCR values an attested release's quote showed


@dataclass(frozen=True)
class Problem(Ignored):
    """A ledger entry replay refused: where, what, and why."""


@dataclass
class Incident:
    """A declared incident: while open, no release in its scope (all, or one model, host or person)."""

    incident_id: str
    scope: str
    severity: str
    declared_at: datetime
    index: int
    lifted_at: datetime | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.lifted_at is None

    def covers(self, model_id: str, host_id: str, people: tuple[str, ...]) -> bool:
        kind, _, subject = self.scope.partition(":")
        return (
            self.scope == "all"
            or (kind == "model" and subject == model_id)
            or (kind == "host" and subject == host_id)
            or (kind == "person" and subject in people)
        )


@dataclass(frozen=True)
class RetiredKey:
    """A model's data key replaced by a rekey: releases logged before ``retired_at`` named it and still
    verify (replay meets them while it was registered); nothing after may name it (CT's retired log)."""

    model_id: str
    reference: dict[str, str]
    retired_at: datetime
    index: int


@dataclass(frozen=True)
class FingerprintRecord:
    """A model's fingerprint policy as the ledger set it (``fingerprint.changed``)."""

    policy: dict[str, Any]  # FingerprintPolicy.to_json()
    key_commitment: str
    index: int

    @property
    def enabled(self) -> bool:
        return bool(self.policy.get("enabled"))


@dataclass(frozen=True)
class AdoptedPlaybook:
    name: str
    digest: str
    document: dict[str, Any]
    index: int


@dataclass
class Prepared:
    """An authorised, validated change: the entry to log, and the update to make once it is durable."""

    entry_type: str
    body: dict[str, Any]
    commit: Callable[[], None]
    officers: tuple[str, ...] = ()


@dataclass
class CustodyState:
    """Everything custody decides on, as the log built it."""

    service_key: str | None = None
    authority: Authority | None = None
    people: Registry = field(default_factory=Registry)
    hosts: HostRegistry = field(default_factory=HostRegistry)
    models: dict[str, RegisteredModel] = field(default_factory=dict)
    registered_keys: dict[str, str] = field(default_factory=dict)  # key digest or seal id -> model id
    releases: dict[str, ReleaseRecord] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)  # administrative nonces and change ids
    incidents: dict[str, Incident] = field(default_factory=dict)
    retired_keys: dict[str, RetiredKey] = field(default_factory=dict)  # key digest -> when and why retired
    playbooks: dict[str, AdoptedPlaybook] = field(default_factory=dict)  # name -> the organisation's playbook
    fingerprints: dict[str, FingerprintRecord] = field(default_factory=dict)  # model id -> its mark policy
    tpm_hosts: dict[str, AttestedHost] = field(default_factory=dict)  # hosts enrolled with TPM evidence
    attest_policy: AttestPolicy = field(default_factory=AttestPolicy)
    leaf_hash_of: Callable[[int], bytes | None] | None = None  # set by whoever holds the log's leaves
    problems: list[Problem] = field(default_factory=list)
    projection: Projection = field(default_factory=Projection)  # appenders' egress and location entries
    last_index: int = -1  # the entry being applied (replay) or just logged (the live service)
    last_exclusive: int = -1  # the last custody entry other than a release (written under the exclusive lock)

    # -- administration: the live service and replay both go through prepare ------------------------

    def authorise(self, change: AdminChange, at: datetime) -> tuple[str, ...]:
        """Fresh at ``at``, never used before, and co-signed by enough distinct current officers."""
        what = change.action
        if self.authority is None:
            raise NotAuthorisedError(f"{what}: no officers are configured (the ledger has no authority entry)")
        change.window.check_fresh(at, what)
        officer_keys = self.authority.keys
        custodian_keys: dict[str, Any] = {}
        if change.action in CUSTODIAN_COSIGNED_ACTIONS:
            custodian_keys = {
                p.key_id: p.verifier
                for p in self.people.people.values()
                if self.people.standing(p.person_id, at).custodian
            }
        signers = change.cosigned.verified_signers({**custodian_keys, **officer_keys}, what)
        if change.window.nonce in self.used or change.change_id in self.used:
            raise MessageError(f"{what}: replayed (this change or its nonce was already used)")
        if custodian_keys and not signers - set(officer_keys):
            raise NotAuthorisedError(f"{what}: needs an active SenL-5 custodian's signature besides the officers'")
        signers &= set(officer_keys)
        needed = officers_needed(change.action, self.authority.threshold)
        if len(signers) < needed:
            raise NotAuthorisedError(
                f"{what}: needs {needed} distinct officers, signed by {len(signers)} "
                f"({', '.join(sorted(self.authority.name_of(k) for k in signers))})"
            )
        return tuple(sorted(self.authority.name_of(k) for k in signers))

    def prepare(self, change: AdminChange, at: datetime) -> Prepared:
        """Authorise ``change`` and validate it against this state without changing anything."""
        officers = self.authorise(change, at)
        auth = change.cosigned.to_json()
        action = change.action
        if action.startswith("person."):
            prepared = self._person(change, auth)
        elif action.startswith("host."):
            prepared = self._host(change, auth, at)
        elif action == "model.register":
            prepared = self._register(change, auth)
        elif action == "model.policy":
            prepared = self._policy(change, auth)
        elif action == "model.rekey":
            prepared = self._rekey(change, auth, at)
        elif action == PLAYBOOK_ACTION:
            prepared = self._playbook(change, auth)
        elif action == "model.fingerprint":
            prepared = self._fingerprint(change, auth)
        elif action.startswith("incident."):
            prepared = self._incident(change, auth, at)
        elif action in TIE_ACTIONS:
            prepared = self._tie(change, auth, at)
        elif action in ("policy.golden", "policy.tpm-ca"):
            prepared = self._attest_policy(change, auth)
        else:
            prepared = self._authority(change.authority(), auth)
        inner = prepared.commit

        def commit() -> None:
            inner()
            self.used.update((change.window.nonce, change.change_id))

        prepared.commit, prepared.officers = commit, officers
        return prepared

    def genesis(self, authority: Authority) -> Prepared:
        """The first authority: officers from the server's settings (trusted on first use)."""
        if self.authority is not None:
            raise AlreadyExistsError("the ledger already has an authority; change it with authority.change")
        return self._authority(authority, None)

    def _person(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        people = copy.deepcopy(self.people)
        person = people.apply(change.change)
        if change.action == "person.enrol" and self.hosts.by_key(person.key_id) is not None:
            raise PeopleError(f"{person.person_id}: this public key is a host's identity key")

        def commit() -> None:
            self.people = people

        body = {"person": person.person_id, "change": change.change["change"], "authorisation": auth}
        return Prepared("person.changed", body, commit)

    def _host(self, change: AdminChange, auth: dict[str, Any], at: datetime | None = None) -> Prepared:
        hosts = copy.deepcopy(self.hosts)
        host = hosts.apply(change.change)
        if change.action == "host.enrol" and self.people.by_key(host.key_id) is not None:
            raise HostError(f"{host.host_id}: this identity key is a person's key")
        attested: tuple[Any, str] | None = None
        if change.action == "host.enrol" and "tpm" in change.change:
            attested = parse_tpm_enrolment(
                change.change["tpm"], host.verifier.pem(), self.attest_policy, at or change.window.issued_at
            )
            for other_id, other in self.tpm_hosts.items():
                if hmac.compare_digest(other.enrolled.ek_fingerprint, attested[0].ek_fingerprint):
                    raise HostError(f"{host.host_id}: this TPM (EK) is already enrolled for host {other_id}")

        def commit() -> None:
            self.hosts = hosts
            if attested is not None:
                self.tpm_hosts[host.host_id] = AttestedHost(attested[0], attested[1], self.last_index)

        return Prepared(
            "host.changed", {"host": host.host_id, "change": change.change["change"], "authorisation": auth}, commit
        )

    def _attest_policy(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        """Golden values of one host class, or a TPM manufacturer CA (both granting: threshold officers)."""
        body = {"policy": change.action, "change": change.change, "authorisation": auth}
        if change.action == "policy.golden":
            golden = parse_golden(change.change)

            def set_golden() -> None:
                policy = self.attest_policy
                policy.golden = policy.golden.merged(golden)
                for host_class in golden.classes:
                    policy.changed_at[host_class] = self.last_index

            return Prepared("attest.policy", body, set_golden)
        pem = parse_manufacturer_ca(change.change)
        if pem in self.attest_policy.manufacturer_cas:
            raise AlreadyExistsError("policy.tpm-ca: this manufacturer CA is already trusted")

        def add_ca() -> None:
            self.attest_policy.manufacturer_cas = (*self.attest_policy.manufacturer_cas, pem)

        return Prepared("attest.policy", body, add_ca)

    def _register(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        registration = change.registration()
        model, key = registration.model_id, registration.key
        if model in self.models:
            raise AlreadyExistsError(f"model {model} is already registered")
        if key.binding.model_id != model:
            raise MessageError(
                f"model registration: the wrapped key is bound to model {key.binding.model_id}, not {model} "
                "(a data key unwraps only for the model it was sealed for)"
            )
        for mark in (key_digest(key), "seal:" + key.binding.seal_id):
            if mark in self.registered_keys:
                raise AlreadyExistsError(
                    "model registration: this wrapped key (or its seal) is already registered, "
                    f"for {self.registered_keys[mark]}"
                )
        body = {
            "model_id": model,
            "policy": registration.policy.rules(),
            "key": key.to_json(),
            "authorisation": auth,
        }

        def commit() -> None:
            self.models[model] = RegisteredModel(registration.policy, key, self.last_index)
            self.registered_keys[key_digest(key)] = model
            self.registered_keys["seal:" + key.binding.seal_id] = model

        return Prepared("model.registered", body, commit)

    def _policy(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        policy = change.policy()
        current = self.model(policy.model_id)

        def commit() -> None:
            self.models[policy.model_id] = RegisteredModel(policy, current.key, current.index)

        return Prepared(
            "policy.changed", {"model_id": policy.model_id, "policy": policy.rules(), "authorisation": auth}, commit
        )

    def _rekey(self, change: AdminChange, auth: dict[str, Any], at: datetime) -> Prepared:
        rekey = change.rekey()
        current = self.model(rekey.model_id)
        old = key_reference(current.key)
        if not hmac.compare_digest(rekey.retires, old["digest"]):
            raise MessageError(
                f"model rekey: retires {rekey.retires[:23]}, but {rekey.model_id}'s key is {old['digest'][:23]}"
            )
        if rekey.key.binding.model_id != rekey.model_id:
            raise MessageError(
                f"model rekey: the new key is bound to model {rekey.key.binding.model_id}, not {rekey.model_id}"
            )
        for mark in (key_digest(rekey.key), "seal:" + rekey.key.binding.seal_id):
            if mark in self.registered_keys:
                raise AlreadyExistsError(
                    f"model rekey: the new key (or its seal) was registered before, for {self.registered_keys[mark]}"
                )
        body = {
            "model_id": rekey.model_id,
            "key": rekey.key.to_json(),
            "retired": {**old, "retired_at": format_time(at)},
            "authorisation": auth,
        }

        def commit() -> None:
            self.models[rekey.model_id] = RegisteredModel(current.policy, rekey.key, self.last_index)
            self.registered_keys[key_digest(rekey.key)] = rekey.model_id
            self.registered_keys["seal:" + rekey.key.binding.seal_id] = rekey.model_id
            self.retired_keys[old["digest"]] = RetiredKey(rekey.model_id, old, at, self.last_index)

        return Prepared("model.rekeyed", body, commit)

    def _fingerprint(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        from strongroom.incident.errors import FingerprintError
        from strongroom.incident.fingerprint import FingerprintPolicy

        choice = change.fingerprint()
        self.model(choice.model_id)
        try:
            policy = FingerprintPolicy.from_json({"model_id": choice.model_id, **choice.policy})
        except FingerprintError as exc:
            raise MessageError(str(exc)) from None
        body = {
            "model_id": choice.model_id,
            "policy": policy.to_json(),
            "key_commitment": choice.key_commitment,
            "authorisation": auth,
        }

        def commit() -> None:
            self.fingerprints[choice.model_id] = FingerprintRecord(
                policy.to_json(), choice.key_commitment, self.last_index
            )

        return Prepared("fingerprint.changed", body, commit)

    def fingerprint_commitment(self, model_id: str, request_id: str) -> str | None:
        """The commitment a release of ``model_id`` carries for its mark (None: releases are not marked)."""
        from strongroom.incident.fingerprint import FingerprintPolicy, release_commitment

        record = self.fingerprints.get(model_id)
        if record is None or not record.enabled:
            return None
        return release_commitment(request_id, record.key_commitment, FingerprintPolicy.from_json(record.policy))

    def _playbook(self, change: AdminChange, auth: dict[str, Any]) -> Prepared:
        from strongroom.incident.errors import PlaybookError
        from strongroom.incident.playbook import Playbook

        adopted = change.playbook()
        try:
            playbook = Playbook.parse(adopted.document)
        except PlaybookError as exc:
            raise MessageError(f"playbook change: {exc}") from None
        body = {"name": adopted.name, "digest": playbook.digest, "document": adopted.document, "authorisation": auth}

        def commit() -> None:
            self.playbooks[adopted.name] = AdoptedPlaybook(
                adopted.name, playbook.digest, adopted.document, self.last_index
            )

        return Prepared("playbook.changed", body, commit)

    def _incident(self, change: AdminChange, auth: dict[str, Any], at: datetime) -> Prepared:
        parsed = change.incident()
        body = {"incident": parsed.incident, "change": parsed.change, "authorisation": auth}
        if parsed.change == "declare":
            if parsed.incident in self.incidents:
                raise AlreadyExistsError(f"incident {parsed.incident} was already declared")

            def declare() -> None:
                self.incidents[parsed.incident] = Incident(
                    parsed.incident, parsed.scope, parsed.severity, at, self.last_index
                )

            return Prepared("incident.changed", body, declare)
        found = self.incidents.get(parsed.incident)
        if found is None:
            raise NotFoundError(f"no incident {parsed.incident}")
        if not found.open:
            raise AlreadyExistsError(f"incident {parsed.incident} was already lifted")

        def lift() -> None:
            found.lifted_at = at

        return Prepared("incident.changed", body, lift)

    def _tie(self, change: AdminChange, auth: dict[str, Any], at: datetime) -> Prepared:
        """An appender enrolled or retired, an egress alarm cleared, or a landmark changed."""
        parsed = parse_tie_change(change.action, change.change)
        projection = self.projection
        if isinstance(parsed, AppenderChange):
            return self._appender(parsed, auth)
        if isinstance(parsed, AlarmClearance):
            status = projection.egress(parsed.host, at, projection.frontier)
            if parsed.alarm_id in projection.cleared:
                raise AlreadyExistsError(f"egress alarm {parsed.alarm_id[:12]} was already cleared")
            if parsed.alarm_id not in {a.alarm_id for a in status.open_alarms}:
                raise NotFoundError(f"host {parsed.host} has no egress alarm {parsed.alarm_id[:12]} on the ledger")

            def clear() -> None:
                projection.cleared[parsed.alarm_id] = self.last_index

            body = {"host": parsed.host, "alarm_id": parsed.alarm_id, "authorisation": auth}
            return Prepared("egress.cleared", body, clear)
        if isinstance(parsed, LocationClearance):
            open_index = projection.open_inconsistent(parsed.host, projection.frontier)
            if open_index is None or open_index != parsed.verdict:
                raise NotFoundError(
                    f"host {parsed.host} has no open INCONSISTENT verdict at entry {parsed.verdict}"
                    + (f" (its open one is entry {open_index})" if open_index is not None else "")
                )

            def clear_location() -> None:
                projection.location_cleared[parsed.host] = parsed.verdict

            cleared: dict[str, Any] = {"host": parsed.host, "verdict": parsed.verdict, "authorisation": auth}
            return Prepared("location.cleared", cleared, clear_location)
        landmarks = LandmarkSet()
        landmarks.landmarks = dict(projection.landmarks.landmarks)
        try:
            landmark = landmarks.apply(parsed)
        except LandmarkError as exc:
            raise MessageError(f"{change.action}: {exc}") from None
        if parsed["change"] == "enrol" and self._key_taken(landmark.key_id):
            raise AlreadyExistsError(f"landmark {landmark.landmark_id}: its key is already an officer's, a person's, "
                                     "a host's or an appender's")  # fmt: skip

        def commit() -> None:
            projection.landmarks = landmarks

        return Prepared("geo.landmark", {**parsed, "authorisation": auth}, commit)

    def _appender(self, parsed: AppenderChange, auth: dict[str, Any]) -> Prepared:
        appenders = self.projection.appenders
        body = {"appender": parsed.appender, "change": parsed.change, "authorisation": auth}
        if parsed.change == "enrol":
            assert parsed.verifier is not None
            verifier = parsed.verifier
            if parsed.appender in appenders:
                raise AlreadyExistsError(f"appender {parsed.appender} was already enrolled (ids are never reused)")
            if self._key_taken(verifier.key_id):
                raise AlreadyExistsError(f"appender {parsed.appender}: its key is already another identity's")
            if parsed.host is not None:
                self.host(parsed.host)  # the gateway of an enrolled host only

            def enrol() -> None:
                appenders[parsed.appender] = AppenderRecord(
                    parsed.appender, verifier, parsed.types, parsed.host, self.last_index
                )

            return Prepared("appender.changed", body, enrol)
        found = appenders.get(parsed.appender)
        if found is None:
            raise NotFoundError(f"no appender {parsed.appender} is enrolled")
        if found.retired is not None:
            raise AlreadyExistsError(f"appender {parsed.appender} was already retired")

        def retire() -> None:
            found.retired = self.last_index

        return Prepared("appender.changed", body, retire)

    def _key_taken(self, key_id: str) -> bool:
        return (
            key_id == self.service_key
            or (self.authority is not None and key_id in self.authority.keys)
            or self.people.by_key(key_id) is not None
            or self.hosts.by_key(key_id) is not None
            or any(a.verifier.key_id == key_id for a in self.projection.appenders.values())
            or self.projection.landmarks.by_key(key_id) is not None
        )

    def host_reasons(self, policy: ModelPolicy, host_id: str, at: datetime, seen: int) -> list[str]:
        """The policy's host conditions (egress, location) that fail at ``at``, on the entries before ``seen``."""
        reasons: list[str] = []
        projection = self.projection
        if policy.egress is not None:
            reasons += egress_reasons(policy.egress, projection.egress(host_id, at, seen), projection.cleared)
        if policy.location is not None:
            verdict = projection.verdict(host_id, seen)
            alarm = projection.open_inconsistent(host_id, seen)
            reasons += location_reasons(policy.location, host_id, verdict, at, projection.landmarks.digest, alarm)
        return reasons

    def freezes(self, model_id: str, host_id: str, people: tuple[str, ...]) -> list[str]:
        """The open incidents whose scope covers this model, host or any of these people."""
        return [
            f"frozen by incident {i.incident_id} ({i.severity}, scope {i.scope})"
            for i in self.incidents.values()
            if i.open and i.covers(model_id, host_id, people)
        ]

    def check_step(self, ack: StepAck, at: datetime) -> dict[str, Any]:
        """An acknowledgement by the holder of its role, for an incident on the ledger: the entry's body."""
        ack.window.check_fresh(at, "incident step")
        incident = self.incidents.get(ack.incident)
        if incident is None:
            raise NotFoundError(f"no incident {ack.incident}")
        if ack.actor == OFFICER_READER:
            verifier = self.authority.keys.get(ack.signed.signer) if self.authority is not None else None
            if verifier is None:
                raise NotAuthorisedError("incident step: signed by a key that is not an officer's")
            ack.signed.verify(verifier, "incident step")
            if ack.role != "security-officer":
                raise NotAuthorisedError(
                    f"incident step: an officer acknowledges security-officer steps, not {ack.role}"
                )
        else:
            try:
                person = self.people.get(ack.actor)
            except PeopleError as exc:
                raise MessageError(f"incident step: {exc}") from None
            ack.signed.verify(person.verifier, "incident step")
            standing = self.people.standing(ack.actor, at)
            if ack.role == "security-officer":
                raise NotAuthorisedError("incident step: security-officer steps are acknowledged with an officer's key")
            if not standing.active:
                raise NotAuthorisedError(f"incident step: {ack.actor} has no access: {', '.join(standing.reasons)}")
            if ack.role == "custodian" and not standing.custodian:
                raise NotAuthorisedError(f"incident step: {ack.actor} is not an active SenL-5 custodian")
        if ack.window.nonce in self.used:
            raise MessageError("incident step: replayed")
        return {"incident": ack.incident, "step": ack.step, "role": ack.role, "statement": ack.signed.to_json()}

    def record_step(self, ack: StepAck, index: int, at: datetime) -> None:
        self.used.add(ack.window.nonce)
        self.incidents[ack.incident].steps.append(
            {"step": ack.step, "role": ack.role, "actor": ack.actor, "time": format_time(at), "index": index}
        )

    def _authority(self, authority: Authority, auth: dict[str, Any] | None) -> Prepared:
        body = authority.to_json() | ({"authorisation": auth} if auth is not None else {})

        def commit() -> None:
            self.authority = authority
            self.people.required_agreement = authority.required_agreement

        return Prepared("authority.changed", body, commit)

    # -- lookups -----------------------------------------------------------------------------------

    def model(self, model_id: str) -> RegisteredModel:
        found = self.models.get(model_id)
        if found is None:
            raise NotFoundError(f"model {model_id} is not registered for custody")
        return found

    def host(self, host_id: str) -> Host:
        try:
            return self.hosts.get(host_id)
        except HostError as exc:
            raise NotFoundError(str(exc)) from None

    # -- releases and loads: the checks replay makes, and the bodies the service logs ---------------

    def check_release(self, body: dict[str, Any], at: datetime) -> ReleaseRecord:
        """Re-decide a logged release from what it carries, at its logged time, against this state."""
        request = ReleaseRequest.parse(SignedMessage.from_json(body.get("request"), "logged request"))
        if request.request_id != body.get("request_id") or request.model_id != body.get("model_id"):
            raise MessageError("the logged request is not the one the entry names")
        model = self.model(request.model_id)
        if body.get("key") != key_reference(model.key):
            raise MessageError("the release names another key than the one registered for the model")
        self.verify_request(request)
        raw = body.get("approvals")
        if not isinstance(raw, list):
            raise MessageError("approvals must be a list")
        approvals = [Approval.parse(SignedMessage.from_json(a, "logged approval")) for a in raw]
        for approval in approvals:
            self.verify_approval(approval, request)
        received_at = parse_time(body.get("received_at"), "received_at")
        if received_at + CLOCK_SKEW < request.window.issued_at or received_at > at:
            raise MessageError("the request's logged arrival time is outside its validity window")
        frozen = self.freezes(request.model_id, request.host_id, (request.requester, *(a.approver for a in approvals)))
        seen, conditions = None, []
        if conditional(model.policy):
            seen = body.get("ledger_seen")
            low = max(self.last_exclusive, self.last_index - MAX_LAG - 1)
            if isinstance(seen, bool) or not isinstance(seen, int) or not low < seen <= self.last_index:
                raise MessageError(
                    "the release's ledger_seen must name the log size the service read before deciding "
                    f"(after entry {low}, at most {self.last_index})"
                )
            conditions = self.host_reasons(model.policy, request.host_id, at, seen)
        logged = body.get("attestation")
        outcome = None
        if model.policy.attestation:
            evidence, nonce = None, ""
            if isinstance(logged, dict):
                evidence = FetchEvidence.parse(
                    {k: v for k, v in logged.items() if k in ("quote", "ledger_head")}, "logged attestation"
                )
                nonce = str(logged.get("fetch_nonce"))
            outcome = self.attest_release(request, nonce, evidence)
        attestation = outcome.reasons if outcome is not None else ()
        decision = evaluate(
            model.policy,
            request,
            received_at,
            approvals,
            self.people,
            self.hosts,
            at,
            frozen,
            conditions=conditions,
            attestation=attestation,
        )
        if not decision.allowed:
            raise NotAuthorisedError("the release would not have been allowed: " + "; ".join(decision.reasons))
        if request.request_id in self.releases:
            raise MessageError(
                f"request {request.request_id[:16]} was already released "
                f"at entry {self.releases[request.request_id].index}"
            )
        record = outcome.record if outcome is not None else None
        expected = release_body(
            request,
            approvals,
            decision,
            model,
            received_at,
            str(body.get("release_nonce")),
            seen,
            record,
            self.fingerprint_commitment(request.model_id, request.request_id),
        )
        if body != expected:
            raise MessageError("the entry's body is not what the release decision produces (edited fields)")
        return ReleaseRecord(
            request.request_id, request.model_id, request.host_id, expected["release_nonce"], -1,
            quoted_pcrs(record) if record is not None else None,
        )  # fmt: skip

    def attest_release(
        self, request: ReleaseRequest, fetch_nonce: str, evidence: FetchEvidence | None, *, live: bool = False
    ) -> AttestationOutcome:
        """The attestation rules of a release (``strongroom.custody.attestation.attest_release``) against the
        enrolment and golden values as they stand; ``live``: also the head's age against the last entry."""
        return attest_release(
            request_id=request.request_id,
            ephemeral=request.ephemeral,
            fetch_nonce=fetch_nonce,
            evidence=evidence,
            host_id=request.host_id,
            host=self.tpm_hosts.get(request.host_id),
            policy=self.attest_policy,
            newest_index=self.last_index if live else None,
            leaf_hash_of=self.leaf_hash_of,
        )

    def verify_request(self, request: ReleaseRequest) -> None:
        """Signed by the enrolled requester, naming an enrolled host that vouched for the ephemeral key."""
        try:
            person = self.people.get(request.requester)
        except PeopleError as exc:
            raise MessageError(f"release request: {exc}") from None
        request.signed.verify(person.verifier, "release request")
        try:
            host = self.hosts.get(request.host_id)
        except HostError as exc:
            raise MessageError(f"release request: {exc}") from None
        request.verify_host_proof(host.verifier)

    def verify_approval(self, approval: Approval, request: ReleaseRequest) -> None:
        try:
            person = self.people.get(approval.approver)
        except PeopleError as exc:
            raise MessageError(f"approval: {exc}") from None
        approval.signed.verify(person.verifier, "approval")
        if approval.request_id != request.request_id:
            raise MessageError("approval: signed for another request (transplanted)")
        if approval.model_id != request.model_id:
            raise MessageError("approval: names another model than the request")

    def check_load(self, report: LoadReport) -> dict[str, Any]:
        """A load report is the released host's, under that release's nonce, and the first for it."""
        release = self.releases.get(report.request_id)
        if release is None:
            raise NotFoundError(f"request {report.request_id[:16]} has not been released")
        report.signed.verify(self.host(release.host_id).verifier, "model.loaded (only the released host reports)")
        if not hmac.compare_digest(report.release_nonce, release.release_nonce):
            raise MessageError("model.loaded: carries another release's nonce")
        if report.model_id != release.model_id or report.host_id != release.host_id:
            raise MessageError(f"model.loaded: host reports {report.model_id} on {report.host_id}, not the release's")
        if report.request_id in self.loaded:
            raise AlreadyExistsError(f"model.loaded: already reported for request {report.request_id[:16]}")
        body = {
            "model_id": report.model_id,
            "request_id": report.request_id,
            "host": report.host_id,
            "loaded_at": format_time(report.loaded_at),
            "statement": report.signed.to_json(),
        }
        if release.quoted is not None:
            host = self.tpm_hosts.get(release.host_id)
            if host is None:
                raise NotAuthorisedError(f"model.loaded: host {release.host_id} has no enrolled TPM")
            verdict = attest_load(
                report.quote, release_nonce=release.release_nonce, model_id=release.model_id,
                release_pcrs=release.quoted, host=host, policy=self.attest_policy,
            )  # fmt: skip
            body["attestation"] = verdict["verdict"]
        return body

    # -- replay ------------------------------------------------------------------------------------

    def apply(self, index: int, entry: Entry) -> None:
        """Apply one ledger entry; UnverifiableEntryError (nothing applied) if it breaks the authority model."""
        self.last_index = index
        self.projection.frontier = max(self.projection.frontier, index)
        if entry.type in PROJECTED_TYPES:
            self.projection.add(index, entry)
            return
        if entry.type not in SERVICE_TYPES:
            return
        try:
            self._apply(index, entry)
        except UnverifiableEntryError:
            raise
        except (StrongroomError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnverifiableEntryError(f"entry {index} ({entry.type}): {exc}") from None

    def _apply(self, index: int, entry: Entry) -> None:
        body, at = entry.body, parse_time(entry.time, "time")
        if entry.type != "key.released":
            self.last_exclusive = index
        if entry.type == "authority.changed" and self.authority is None:
            if "authorisation" in body:
                raise NotAuthorisedError("the first authority entry must be the genesis (no authorisation)")
            prepared = self.genesis(Authority.parse(body))
            self.service_key = entry.signer
        else:
            if entry.signer != self.service_key:
                raise NotAuthorisedError(f"written by key {entry.signer[:16]}, not by the custody service")
            if entry.type == "key.released":
                record = self.check_release(body, at)
                self.record_release(
                    ReleaseRecord(
                        record.request_id, record.model_id, record.host_id, record.release_nonce, index, record.quoted
                    )
                )
                return
            if entry.type == "attest.refused":
                check_refusal(body)  # a record of a refused fetch: it changes nothing
                return
            if entry.type == "incident.step":
                ack = StepAck.parse(SignedMessage.from_json(body.get("statement"), "incident step"))
                if self.check_step(ack, at) != body:
                    raise MessageError("the entry's body is not the acknowledgement")
                self.record_step(ack, index, at)
                return
            if entry.type == "model.loaded":
                report = LoadReport.parse(SignedMessage.from_json(body.get("statement"), "load statement"))
                if self.check_load(report) != body:
                    raise MessageError("the entry's body is not the host's statement")
                self.loaded.add(report.request_id)
                return
            change = AdminChange.parse(CoSigned.from_json(body.get("authorisation"), "authorisation"))
            if ENTRY_FOR_ACTION[change.action] != entry.type:
                raise MessageError(f"authorisation is for {change.action}, not a {entry.type} entry")
            prepared = self.prepare(change, at)
        if prepared.body != body:
            raise MessageError("the entry's body differs from the change its officers signed")
        prepared.commit()

    def record_release(self, record: ReleaseRecord) -> None:
        self.releases[record.request_id] = record


def release_body(
    request: ReleaseRequest,
    approvals: list[Approval],
    decision: Decision,
    model: RegisteredModel,
    received_at: datetime,
    release_nonce: str,
    ledger_seen: int | None = None,
    attestation: dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The ``key.released`` body: every signed input of the decision, and its outcome; for a policy with host
    conditions, also the log size the service had read when it decided (``ledger_seen``), for one that
    requires attestation the attestation record (quote, ledger head, fetch nonce and verdict), and, when the
    model's releases are marked, the commitment to this release's mark (``fingerprint``)."""
    body: dict[str, Any] = {
        "model_id": request.model_id,
        "request_id": request.request_id,
        "request": request.signed.to_json(),
        "approvals": [a.signed.to_json() for a in approvals],
        "approvers": list(decision.approvers),
        "custodians": list(decision.custodians),
        "host": {"host_id": request.host_id, "key_id": request.host_key_id},
        "key": key_reference(model.key),
        "received_at": format_time(received_at),
        "release_nonce": release_nonce,
    }
    if ledger_seen is not None:
        body["ledger_seen"] = ledger_seen
    if attestation is not None:
        body["attestation"] = attestation
    if fingerprint is not None:
        body["fingerprint"] = fingerprint
    return body


def conditional(policy: ModelPolicy) -> bool:
    """Whether the policy has host conditions (egress control or location), decided on appenders' entries."""
    return policy.egress is not None or policy.location is not None


def refusal_body(request: ReleaseRequest, outcome: AttestationOutcome) -> dict[str, Any]:
    """The ``attest.refused`` body: which release a failed attestation stopped, why, and the evidence's digest."""
    return {
        "model_id": request.model_id,
        "request_id": request.request_id,
        "host": request.host_id,
        "reasons": list(outcome.reasons),
        "evidence_digest": outcome.evidence_digest,
    }


def check_refusal(body: dict[str, Any]) -> None:
    reasons = body.get("reasons")
    if set(body) != {"model_id", "request_id", "host", "reasons", "evidence_digest"} or not (
        isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons)
    ):
        raise MessageError("attest.refused: not a refusal record")


def replay(entries: Iterable[tuple[int, Entry]], state: CustodyState | None = None) -> CustodyState:
    """Fold the log into a state; every entry that fails the authority model becomes a Problem, unapplied."""
    state = state or CustodyState()
    for index, entry in entries:
        try:
            state.apply(index, entry)
        except UnverifiableEntryError as exc:
            state.problems.append(Problem(index, entry.type, str(exc)))
    return state


__all__ = [
    "CustodyError",
    "CustodyState",
    "Prepared",
    "Problem",
    "RegisteredModel",
    "ReleaseRecord",
    "key_digest",
    "release_body",
    "replay",
]
