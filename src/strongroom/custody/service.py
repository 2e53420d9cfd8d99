"""The custody service: the one gate every key release and every administrative change passes.

A library caller gets exactly the guarantees an HTTP caller gets: routes and commands only parse, call and
map typed errors. State comes from the ledger (``strongroom.custody.state``): at start the service replays
the whole log and refuses to release anything while an entry fails the authority model.

A release passes, in order: the fetch is well-formed, fresh and signed by the enrolled host the request
named; the request is claimed in the database (one racer wins); the decision function allows it against
the approvals read in that same transaction; the ``key.released`` entry is durable on the ledger. Only
then is the data key unwrapped inside the provider and sealed to the host's ephemeral key (or, for a split
key, the custodians' shares forwarded); nothing that lets anyone unwrap or combine the key exists before
the decision is logged. A host that fetches again receives the same delivery.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from strongroom.attest.binding import seal_to_tpm
from strongroom.attest.errors import AttestError
from strongroom.custody.attestation import AttestationOutcome, release_pcr_policy
from strongroom.custody.authority import SERVICE_TYPES
from strongroom.custody.decision import Decision, evaluate
from strongroom.custody.details import check_openings
from strongroom.custody.envelope import SignedMessage, format_time, parse_time, utc_now, whole_seconds
from strongroom.custody.errors import (
    AlreadyExistsError,
    AwaitingSharesError,
    CustodyError,
    MessageError,
    NotAuthorisedError,
    NotFoundError,
    PolicyError,
    UnavailableError,
    UnverifiableLedgerError,
)
from strongroom.custody.ports import EventLog
from strongroom.custody.projection import PROJECTED_TYPES
from strongroom.custody.protocol import (
    EGRESS_ACTIONS,
    OFFICER_READER,
    AdminChange,
    AdminSubmission,
    Approval,
    Authority,
    Fetch,
    LoadReport,
    PendingQuery,
    ReadQuery,
    ReleaseRequest,
    ShareDelivery,
    StepAck,
)
from strongroom.custody.release_crypto import release_info
from strongroom.custody.state import (
    SHAMIR,
    CustodyState,
    Prepared,
    RegisteredModel,
    ReleaseRecord,
    conditional,
    refusal_body,
    release_body,
    replay,
)
from strongroom.custody.state_lock import StateLock
from strongroom.custody.store import PENDING, RELEASED, RELEASING, CustodyStore, DuplicateError, Tx
from strongroom.errors import StrongroomError
from strongroom.hosts import HostError
from strongroom.keys.errors import HpkeError, KeyProviderError, UnwrapError
from strongroom.keys.hpke import public_from_bytes, seal_to_host, usable_recipient
from strongroom.keys.provider import KeyProvider, WrappedKey
from strongroom.keys.shamir import ShamirBlob
from strongroom.ledger.merkle import leaf_hash
from strongroom.memory import wipe
from strongroom.people import PeopleError
from strongroom.signing import Signer

if TYPE_CHECKING:
    from strongroom.incident.fingerprint import FingerprintKey


class CustodyService:
    """Custody decisions over a store, the ledger (state and log), and the key providers."""

    def __init__(
        self,
        store: CustodyStore,
        log: EventLog,
        service_key: Signer,
        providers: list[KeyProvider],
        *,
        genesis: Authority | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.log = log
        self.service_key = service_key
        self.providers = providers
        self.clock = clock
        self.fingerprint_keys: dict[str, FingerprintKey] = {}  # key commitment -> key (incident attribution)
        self._lock = StateLock()
        self._loads = threading.Lock()
        self.state = replay(log.scan(SERVICE_TYPES | PROJECTED_TYPES), CustodyState(leaf_hash_of=self._leaf_hash))
        if self.state.service_key not in (None, service_key.key_id):
            raise CustodyError(
                f"this server's service key {service_key.key_id[:16]} did not write the ledger's custody entries "
                f"({self.state.service_key[:16] if self.state.service_key else ''}): wrong DATA directory or key"
            )
        if self.state.authority is None and genesis is not None:
            self._log_change(self.state.genesis(genesis), whole_seconds(self.clock()))
            self.state.service_key = service_key.key_id
        self.settled = self.settle_interrupted_releases()

    # -- administration ----------------------------------------------------------------------------

    def admin(self, submission: AdminSubmission) -> dict[str, Any]:
        """Apply an officer-co-signed change (people, hosts, models, policies, the officers): authorised and
        validated against the ledger's state, logged with its personnel details as commitments, then applied;
        the openings of those commitments go to the private store."""
        change = AdminChange.parse(submission.cosigned)
        openings = check_openings(change.action, change.change, submission.openings)
        now = whole_seconds(self.clock())
        with self._lock.exclusive():
            if change.action in EGRESS_ACTIONS:
                self.state.projection.catch_up(self.log)  # the alarm to clear may have just been logged
            prepared = self.state.prepare(change, now)
            if change.action == "model.register":
                self._check_binding(change.registration().key)
            elif change.action == "model.rekey":
                self._check_binding(change.rekey().key)
            receipt = self._log_change(prepared, now)
        if openings:
            index = int(receipt["index"])

            def keep(tx: Tx) -> None:
                for name, opening in openings.items():
                    tx.insert_detail(change.subject, index, name, json.dumps(opening.to_json()))

            self.store.write(keep)
        return {
            "action": change.action,
            "subject": change.subject,
            "change_id": change.change_id,
            "officers": list(prepared.officers),
            "ledger": receipt,
        }

    # -- authenticated reads -----------------------------------------------------------------------

    def read(self, signed: SignedMessage) -> dict[str, Any]:
        """What one authenticated reader may see: a person's standing (themselves, officers), their private
        details (officers), a request's status (its requester, people cleared for the model, officers), a
        host's record (active people, officers)."""
        now = whole_seconds(self.clock())
        query = ReadQuery.parse(signed)
        query.window.check_fresh(now, "read")
        state = self.state
        officer = query.reader == OFFICER_READER
        if officer:
            verifier = state.authority.keys.get(signed.signer) if state.authority is not None else None
            if verifier is None:
                raise NotAuthorisedError("read: signed by a key that is not an officer's")
            signed.verify(verifier, "read")
            tier = 0
        else:
            try:
                person = state.people.get(query.reader)
            except PeopleError as exc:
                raise MessageError(f"read: {exc}") from None
            signed.verify(person.verifier, "read")
            tier = state.people.standing(query.reader, now).effective_tier
            if person.offboarded:
                raise NotAuthorisedError(f"read: {query.reader} is offboarded")
        denied = NotAuthorisedError(f"read: {query.reader} may not read {query.kind} {query.subject}")
        if query.kind == "person":
            if not officer and query.subject != query.reader:
                raise denied
            return state.people.standing(query.subject, now).to_json()
        if query.kind == "details":
            if not officer:
                raise denied
            with self.store.transaction(write=False) as tx:
                rows = tx.details(query.subject)
            return {"person": query.subject, "details": [
                {"ledger_index": i, "field": f, **json.loads(o)} for i, f, o in rows
            ]}  # fmt: skip
        if query.kind == "host":
            if not officer and tier == 0:
                raise denied
            record = state.host(query.subject).to_json()
            attested = state.tpm_hosts.get(query.subject)
            if attested is not None:
                record["tpm"] = {
                    "host_class": attested.host_class,
                    "ek_manufacturer": attested.enrolled.ek_manufacturer,
                    "ek_model": attested.enrolled.ek_model,
                    "ek_fingerprint": attested.enrolled.ek_fingerprint.hex(),
                    "ak_name": attested.enrolled.ak_name.hex(),
                    "enrolled_at": attested.index,
                }
            return record
        request, _, _ = self._request(query.subject)
        if (
            not officer
            and query.reader != request.requester
            and tier < state.model(request.model_id).policy.required_tier
        ):
            raise denied
        return self.status(query.subject)

    def _check_binding(self, key: WrappedKey) -> None:
        """A key this server cannot unwrap, or one whose binding was edited, is never registered: the provider
        authenticates the binding (the data key exists in this process only for that check, and nobody
        receives it). A split key's binding is checked by each custodian and by the host instead."""
        if key.provider == SHAMIR:
            return
        provider = self._provider_for(key)
        try:
            wipe(provider.unwrap(key))
        except UnwrapError as exc:
            raise MessageError(f"model registration: the wrapped key does not open under its binding: {exc}") from None
        except StrongroomError as exc:
            raise UnavailableError(f"key provider {key.provider}:{key.key_id} unavailable: {exc}") from None

    def _log_change(self, prepared: Prepared, now: datetime) -> dict[str, Any]:
        try:
            receipt = self.log.append_event(prepared.entry_type, prepared.body, self.service_key, format_time(now))
        except StrongroomError as exc:
            raise UnavailableError(f"ledger append failed, nothing changed: {exc}") from None
        self.state.last_index = self.state.last_exclusive = int(receipt["index"])
        prepared.commit()
        return receipt

    # -- requests and approvals --------------------------------------------------------------------

    def submit_request(self, signed: SignedMessage) -> str:
        """Record a release request from an active requester for an enrolled host; returns its id."""
        now = whole_seconds(self.clock())
        request = ReleaseRequest.parse(signed)
        request.window.check_fresh(now, "release request")
        try:
            usable_recipient(request.ephemeral)  # else the release would be logged and never deliverable
        except KeyProviderError as exc:
            raise MessageError(f"release request: host ephemeral key: {exc}") from None
        state = self.state
        state.verify_request(request)
        model = state.model(request.model_id)
        standing = state.people.standing(request.requester, now)
        if not standing.active:
            raise PolicyError([f"requester {request.requester} has no access: {', '.join(standing.reasons)}"])
        if standing.effective_tier < model.policy.required_tier:
            raise PolicyError(
                [
                    f"requester {request.requester} is SenL-{standing.effective_tier}; the model needs "
                    f"SenL-{model.policy.required_tier}"
                ]
            )
        try:
            state.hosts.active(request.host_id)
        except HostError as exc:
            raise PolicyError([str(exc)]) from None
        frozen = state.freezes(request.model_id, request.host_id, (request.requester,))
        if frozen:
            raise PolicyError(frozen)
        received = format_time(now)
        message = json.dumps(signed.to_json())

        def record(tx: Tx) -> None:
            tx.spend_nonce(request.window.nonce, received, "release request")
            tx.insert_request(request.request_id, request.model_id, request.requester, message, received)

        try:
            self.store.write(record)
        except DuplicateError:
            raise MessageError("release request: replayed (already recorded)") from None
        return request.request_id

    def submit_approval(self, request_id: str, signed: SignedMessage) -> int:
        """Record one approval or denial by an active person cleared for the model; returns how many decisions
        the request now has."""
        now = whole_seconds(self.clock())
        approval = Approval.parse(signed)
        approval.window.check_fresh(now, "approval")
        if approval.request_id != request_id:
            raise MessageError("approval: signed for another request (transplanted)")
        request, state_name, _ = self._request(request_id)
        state = self.state
        state.verify_approval(approval, request)
        if state_name != PENDING:
            raise CustodyError(_not_pending(request_id, state_name))
        if approval.approver == request.requester:
            raise PolicyError([f"{approval.approver} cannot approve their own request"])
        model = state.model(request.model_id)
        standing = state.people.standing(approval.approver, now)
        if not standing.active:
            raise PolicyError([f"approver {approval.approver} has no access: {', '.join(standing.reasons)}"])
        if standing.effective_tier < model.policy.required_tier:
            raise PolicyError(
                [
                    f"approver {approval.approver} is SenL-{standing.effective_tier}; the model needs "
                    f"SenL-{model.policy.required_tier}"
                ]
            )
        frozen = state.freezes(request.model_id, request.host_id, (request.requester, approval.approver))
        if frozen and approval.approves:  # pending requests are frozen; a denial still lands
            raise PolicyError(frozen)
        received = format_time(now)
        message = json.dumps(signed.to_json())

        def record(tx: Tx) -> int:
            current = tx.request_state(request_id)
            if current != PENDING:  # released (or being released) since the check above
                raise CustodyError(_not_pending(request_id, current or "gone"))
            tx.spend_nonce(approval.window.nonce, received, "approval")
            tx.insert_approval(signed.digest, request_id, approval.approver, message, received)
            return tx.count_approvals(request_id)

        try:
            return self.store.write(record)
        except DuplicateError:
            raise MessageError(f"approval: replayed, or {approval.approver} already decided on this request") from None

    def _query(self, signed: SignedMessage) -> PendingQuery:
        """A fresh query signed by an enrolled person who is not offboarded."""
        query = PendingQuery.parse(signed)
        query.window.check_fresh(whole_seconds(self.clock()), "query")
        try:
            person = self.state.people.get(query.person)
        except PeopleError as exc:
            raise MessageError(f"query: {exc}") from None
        signed.verify(person.verifier, "query")
        if person.offboarded:
            raise NotAuthorisedError(f"query: {query.person} is offboarded")
        return query

    def pending(self, signed: SignedMessage) -> list[dict[str, Any]]:
        """Pending requests the asker (an enrolled, not offboarded person) has not yet decided on, each with the
        host's name and key fingerprint."""
        query = self._query(signed)
        state = self.state

        def read(tx: Tx) -> tuple[list[tuple[str, str, str]], set[str]]:
            return tx.pending_requests(), tx.decided_by(query.person)

        with self.store.transaction(write=False) as tx:
            rows, decided = read(tx)
        out = []
        for request_id, message, received_at in rows:
            if request_id in decided:
                continue
            request = ReleaseRequest.parse(SignedMessage.from_json(message, "stored request"))
            if request.requester == query.person:
                continue
            item: dict[str, Any] = {
                "request_id": request_id,
                "received_at": received_at,
                "request": request.signed.to_json(),
                "host": state.host(request.host_id).to_json(),
            }
            out.append(item)
        return out

    def status(self, request_id: str) -> dict[str, Any]:
        request, state_name, received_at = self._request(request_id)
        approvals = self._approvals(request_id)
        model = self.state.model(request.model_id)
        with self._lock.shared():  # officers' changes (appenders enrolled or retired) wait for the catch-up
            seen = self.state.projection.catch_up(self.log) if conditional(model.policy) else None
            decision = self._decide(model, request, received_at, approvals, whole_seconds(self.clock()), seen)
        return {
            "request_id": request_id,
            "state": state_name,
            "model_id": request.model_id,
            "requester": request.requester,
            "host": request.host_id,
            "approvals": [a.approver for a in approvals],
            "ready": decision.allowed,
            "reasons": list(decision.reasons),
        }

    # -- release -----------------------------------------------------------------------------------

    def release(self, request_id: str, signed: SignedMessage) -> dict[str, Any]:
        """The data key for the requesting host, exactly once, logged before anything can unwrap it; a
        repeated fetch by the same host gets the same delivery."""
        if self.state.problems:
            raise UnverifiableLedgerError(
                "releases are stopped: ledger entries at "
                f"{', '.join(str(p.index) for p in self.state.problems[:5])} fail the authority model"
            )
        now = whole_seconds(self.clock())
        fetch = Fetch.parse(signed)
        fetch.window.check_fresh(now, "release fetch")
        if fetch.request_id != request_id:
            raise MessageError("release fetch: signed for another request")
        request, state_name, received_at = self._request(request_id)
        fetch.signed.verify(
            self.state.host(request.host_id).verifier, "release fetch (only the requesting host may fetch)"
        )
        if state_name == RELEASED:
            return self._deliver_again(request, fetch, now)
        model = self.state.model(request.model_id)
        if model.key.provider != SHAMIR:
            self._provider_for(model.key)  # fail closed before anything is claimed or logged
        self._fingerprint_key(request.model_id)  # likewise: a marked model's release needs its mark
        with self._lock.shared():
            # the appenders' egress and location entries so far: the decision's inputs, named in the entry
            seen = self.state.projection.catch_up(self.log) if conditional(model.policy) else None
            attested: AttestationOutcome | None = None
            if model.policy.attestation:
                attested = self.state.attest_release(request, fetch.window.nonce, fetch.attestation, live=True)

            def claim(tx: Tx) -> tuple[list[Approval], Decision]:
                """In one commit: claim the request (one racer wins), decide, spend the fetch nonce."""
                tx.claim(request_id)
                approvals = _parse_approvals(tx.approvals(request_id))
                decision = self._decide(model, request, received_at, approvals, now, seen, attested)
                if not decision.allowed:
                    raise PolicyError(list(decision.reasons))
                tx.spend_nonce(fetch.window.nonce, format_time(now), "release fetch")
                return approvals, decision

            try:
                approvals, decision = self.store.write(claim, urgent=True)
            except PolicyError:
                if attested is not None and attested.reasons:
                    self._refused(request, attested, fetch, now)
                raise
            record = attested.record if attested is not None else None
            fingerprint = self.state.fingerprint_commitment(request.model_id, request_id)
            body = release_body(
                request, approvals, decision, model, received_at, secrets.token_hex(16), seen, record, fingerprint
            )
            try:
                receipt = self.log.append_event("key.released", body, self.service_key, format_time(now))
            except BaseException as exc:
                self.store.write(lambda tx: tx.unclaim(request_id), urgent=True)
                if isinstance(exc, StrongroomError):
                    raise UnavailableError(f"ledger append failed, nothing released: {exc}") from None
                raise
            index = int(receipt["index"])
            quoted = (
                None if record is None else {int(k): bytes.fromhex(v) for k, v in record["verdict"]["pcrs"].items()}
            )
            self.state.record_release(
                ReleaseRecord(request_id, request.model_id, request.host_id, body["release_nonce"], index, quoted)
            )
        # The decision is durable: from here on the request is released, whatever delivery does.
        try:
            bundle = self._deliver(request, body, model, receipt, [])
        except AwaitingSharesError:
            self.store.write(lambda tx: tx.record_release(request_id, None, index, format_time(now)), urgent=True)
            raise
        except StrongroomError as exc:
            self.store.write(lambda tx: tx.record_release(request_id, None, index, format_time(now)), urgent=True)
            raise UnavailableError(
                f"release logged (entry {index}) but the key could not be delivered: {exc}; fetch again"
            ) from None
        delivery = json.dumps(bundle)
        self.store.write(lambda tx: tx.record_release(request_id, delivery, index, format_time(now)), urgent=True)
        return bundle

    def _deliver(
        self,
        request: ReleaseRequest,
        body: dict[str, Any],
        model: RegisteredModel,
        receipt: dict[str, Any],
        shares: list[str],
    ) -> dict[str, Any]:
        """What the host collects: the data key sealed to its ephemeral key, or, for a split key, the shares
        custodians delivered for this logged release once there are enough of them."""
        delivery: dict[str, Any]
        if model.key.provider == SHAMIR:
            threshold = ShamirBlob.parse(model.key).threshold
            if len(shares) < threshold:
                raise AwaitingSharesError(
                    f"release logged (entry {receipt['index']}); {len(shares)} of {threshold} custodian shares "
                    "delivered so far",
                    len(shares),
                    threshold,
                )
            delivery = {"shares": [json.loads(share) for share in shares]}
        else:
            info = release_info(request.request_id, request.model_id, request.host_id)
            bind = self._tpm_binding(request, body)
            delivery = {"wrapped_key": self._unwrap_and_seal(model.key, request.ephemeral, info, bind)}
            if bind is not None:
                delivery["tpm_bound"] = True
        mark = self._fingerprint_key(request.model_id)
        if mark is not None:
            delivery["fingerprint"] = self._seal_mark(mark, request, body)
        return {
            "request_id": request.request_id,
            "model_id": request.model_id,
            "host_id": request.host_id,
            **delivery,
            "key": model.key.to_json(),
            "approvers": body["approvers"],
            "release_nonce": body["release_nonce"],
            "ledger": receipt,
        }

    def _deliver_again(self, request: ReleaseRequest, fetch: Fetch, now: datetime) -> dict[str, Any]:
        """A repeated fetch from the released host: the same delivery (made now if it could not be before)."""
        request_id = request.request_id
        self.store.write(lambda tx: tx.spend_nonce(fetch.window.nonce, format_time(now), "release fetch"), urgent=True)
        with self.store.transaction(write=False) as tx:
            found, shares = tx.release(request_id), tx.shares(request_id)
        if found is None:
            raise CustodyError(_not_pending(request_id, RELEASED))
        delivery, index = found
        if delivery is not None:
            return dict(json.loads(delivery))
        entry = self.log.read(index)
        bundle = self._deliver(request, entry.body, self.state.model(request.model_id), {"index": index}, shares)
        text = json.dumps(bundle)
        self.store.write(lambda tx: tx.record_release(request_id, text, index, entry.time), urgent=True)
        return bundle

    # -- custodians' shares, after the decision --------------------------------------------------

    def awaiting_shares(self, signed: SignedMessage) -> list[dict[str, Any]]:
        """Logged releases of split keys the asking custodian has not delivered a share for, each with the
        signed request (whose host key the share goes to), the ledger index to check, and the wrapped key."""
        query = self._query(signed)
        with self.store.transaction(write=False) as tx:
            released, done = tx.released_requests(), tx.delivered_by(query.person)
        out = []
        for request_id, message, index in released:
            request = ReleaseRequest.parse(SignedMessage.from_json(message, "stored request"))
            model = self.state.models.get(request.model_id)
            if request_id in done or model is None or model.key.provider != SHAMIR:
                continue
            out.append({"request_id": request_id, "release_index": index, "request": request.signed.to_json(),
                        "key": model.key.to_json()})  # fmt: skip
        return out

    def deliver_share(self, request_id: str, signed: SignedMessage) -> int:
        """Accept an active custodian's share for a release already durable on the ledger; returns how many
        distinct shares the host can now collect. Before the decision there is nothing to deliver to."""
        now = whole_seconds(self.clock())
        delivery = ShareDelivery.parse(signed)
        delivery.window.check_fresh(now, "share delivery")
        if delivery.request_id != request_id:
            raise MessageError("share delivery: signed for another request")
        try:
            person = self.state.people.get(delivery.custodian)
        except PeopleError as exc:
            raise MessageError(f"share delivery: {exc}") from None
        signed.verify(person.verifier, "share delivery")
        standing = self.state.people.standing(delivery.custodian, now)
        if not standing.custodian:
            raise NotAuthorisedError(f"share delivery: {delivery.custodian} is not an active SenL-5 custodian")
        record = self.state.releases.get(request_id)
        if record is None:
            raise PolicyError([f"request {request_id[:16]} has no logged release: shares follow the decision"])
        if record.index != delivery.release_index:
            raise MessageError(
                f"share delivery: the release is ledger entry {record.index}, not {delivery.release_index}"
            )
        key = self.state.model(record.model_id).key
        if key.provider != SHAMIR or delivery.share.key_id != key.key_id:
            raise MessageError("share delivery: the share is not for this model's split key")
        if not 1 <= delivery.share.index <= len(ShamirBlob.parse(key).shares):
            raise MessageError(f"share delivery: there is no share {delivery.share.index} of this key")
        share = json.dumps(delivery.share.to_json())

        def record_share(tx: Tx) -> int:
            tx.spend_nonce(delivery.window.nonce, format_time(now), "share delivery")
            tx.insert_share(request_id, delivery.custodian, delivery.share.index, share, format_time(now))
            return len(tx.shares(request_id))

        try:
            return self.store.write(record_share)
        except DuplicateError:
            raise AlreadyExistsError("share delivery: this custodian or this share was already delivered") from None

    def hold_fingerprint_key(self, key: FingerprintKey) -> None:
        """Keep a fingerprint key (``strongroom.incident.fingerprint.FingerprintKey``) for marking releases."""
        self.fingerprint_keys[key.commitment] = key

    def _fingerprint_key(self, model_id: str) -> FingerprintKey | None:
        """The key a release of ``model_id`` is marked with (None: not marked); unavailable fails closed."""
        record = self.state.fingerprints.get(model_id)
        if record is None or not record.enabled:
            return None
        key = self.fingerprint_keys.get(record.key_commitment)
        if key is None:
            raise UnavailableError(
                f"model {model_id[:23]} is marked at release, but this server does not hold its fingerprint key "
                f"({record.key_commitment[:23]}); nothing released"
            )
        return key

    def _seal_mark(self, key: FingerprintKey, request: ReleaseRequest, body: dict[str, Any]) -> dict[str, Any]:
        """This release's mark secret sealed to the host's ephemeral key, with the policy to apply it by."""
        release_key = key.release_key(request.request_id)
        info = release_info(request.request_id, request.model_id, request.host_id) + b"/fingerprint"
        try:
            sealed = base64.b64encode(
                seal_to_host(public_from_bytes(request.ephemeral), release_key.secret, info)
            ).decode()
        except HpkeError as exc:
            raise MessageError(f"the host's ephemeral key is unusable: {exc}") from None
        finally:
            release_key.wipe()
        record = self.state.fingerprints[request.model_id]
        return {
            "sealed": sealed,
            "policy": record.policy,
            "key_commitment": record.key_commitment,
            "commitment": body["fingerprint"],
        }

    def _tpm_binding(self, request: ReleaseRequest, body: dict[str, Any]) -> Callable[[bytearray], bytes] | None:
        """For an attested release: what turns the data key into a blob only the host's TPM opens, and only in
        the approved PCR state with this model's measurement extended (``attest.binding.seal_to_tpm``)."""
        record = body.get("attestation")
        if record is None:
            return None
        host = self.state.tpm_hosts.get(request.host_id)
        if host is None:
            raise UnavailableError(f"host {request.host_id} has no enrolled TPM to bind the key to")
        policy = release_pcr_policy(record, request.model_id)
        storage = host.enrolled.storage_public

        def bind(data_key: bytearray) -> bytes:
            try:
                return seal_to_tpm(data_key, storage, policy).to_json()
            except AttestError as exc:
                raise UnavailableError(f"cannot bind the key to the host's TPM: {exc}") from None

        return bind

    def _refused(self, request: ReleaseRequest, outcome: AttestationOutcome, fetch: Fetch, now: datetime) -> None:
        """Log ``attest.refused`` and spend the fetch's nonce (a captured fetch cannot be replayed to log more)."""
        try:
            self.store.write(
                lambda tx: tx.spend_nonce(fetch.window.nonce, format_time(now), "release fetch"), urgent=True
            )
        except DuplicateError:
            return
        with contextlib.suppress(StrongroomError):  # the refusal stands whether or not its record is written
            self.log.append_event("attest.refused", refusal_body(request, outcome), self.service_key, format_time(now))

    def _leaf_hash(self, index: int) -> bytes | None:
        """The leaf hash of ledger entry ``index`` (None if there is none)."""
        try:
            return leaf_hash(self.log.read(index).raw)
        except (StrongroomError, IndexError, ValueError):
            return None

    def ledger_head(self) -> dict[str, Any]:
        """The head a host's release quote binds: the last custody entry's index and leaf hash."""
        index = self.state.last_index
        leaf = self._leaf_hash(index) if index >= 0 else None
        if leaf is None:
            raise UnavailableError("the ledger has no custody entry yet")
        return {"index": index, "leaf_hash": leaf.hex()}

    def _unwrap_and_seal(
        self, key: WrappedKey, ephemeral: bytes, info: bytes, bind: Callable[[bytearray], bytes] | None = None
    ) -> str:
        """Unwrap inside the provider and seal the data key to the host's ephemeral key (HPKE); with ``bind``,
        what is sealed is the data key already wrapped to the host's TPM."""
        provider = self._provider_for(key)
        try:
            data_key = provider.unwrap(key)
        except StrongroomError as exc:
            raise UnavailableError(f"key provider {key.provider}:{key.key_id} could not unwrap: {exc}") from None
        except Exception as exc:
            raise UnavailableError(f"key provider {key.provider}:{key.key_id} unavailable: {exc}") from None
        try:
            plaintext = data_key if bind is None else bind(data_key)
            return base64.b64encode(seal_to_host(public_from_bytes(ephemeral), plaintext, info)).decode()
        except HpkeError as exc:
            raise MessageError(f"the host's ephemeral key is unusable: {exc}") from None
        finally:
            wipe(data_key)

    # -- incidents -------------------------------------------------------------------------------

    def acknowledge(self, signed: SignedMessage) -> dict[str, Any]:
        """Log one playbook step of an incident, acknowledged by whoever holds its role."""
        ack = StepAck.parse(signed)
        now = whole_seconds(self.clock())
        with self._lock.exclusive():
            body = self.state.check_step(ack, now)
            try:
                receipt = self.log.append_event("incident.step", body, self.service_key, format_time(now))
            except StrongroomError as exc:
                raise UnavailableError(f"ledger append failed: {exc}") from None
            self.state.last_exclusive = int(receipt["index"])
            self.state.record_step(ack, int(receipt["index"]), now)
        return receipt

    # -- loads -------------------------------------------------------------------------------------

    def record_load(self, request_id: str, signed: SignedMessage) -> dict[str, Any]:
        """Log ``model.loaded``: the released host's statement under the release's nonce, once per release."""
        report = LoadReport.parse(signed)
        if report.request_id != request_id:
            raise MessageError("model.loaded: signed for another request")
        with self._lock.exclusive():
            body = self.state.check_load(report)
            try:
                receipt = self.log.append_event("model.loaded", body, self.service_key)
            except StrongroomError as exc:
                raise UnavailableError(f"ledger append failed: {exc}") from None
            self.state.last_exclusive = int(receipt["index"])
            self.state.loaded.add(request_id)
        return receipt

    # -- start-up ----------------------------------------------------------------------------------

    def settle_interrupted_releases(self) -> dict[str, str]:
        """Settle requests a crash left claimed (``releasing``) by what the ledger says happened.

        The ledger entry is the durable fact of a release: with one the request is released (its host's next
        fetch delivers); without one nothing was decided, and it is pending again. Returns request id -> the
        state it was settled to.
        """
        with self.store.transaction(write=False) as tx:
            stuck = tx.requests_in(RELEASING)
        settled: dict[str, str] = {}
        for request_id in stuck:
            record = self.state.releases.get(request_id)
            time = self.log.read(record.index).time if record is not None else ""

            def settle(
                tx: Tx, request_id: str = request_id, record: ReleaseRecord | None = record, time: str = time
            ) -> str:
                if record is None:
                    tx.unclaim(request_id)
                    return PENDING
                tx.record_release(request_id, None, record.index, time)
                return RELEASED

            settled[request_id] = self.store.write(settle)
        return settled

    # -- helpers -----------------------------------------------------------------------------------

    def _decide(
        self,
        model: RegisteredModel,
        request: ReleaseRequest,
        received_at: datetime,
        approvals: list[Approval],
        now: datetime,
        seen: int | None = None,
        attested: AttestationOutcome | None = None,
    ) -> Decision:
        state = self.state
        frozen = state.freezes(request.model_id, request.host_id, (request.requester, *(a.approver for a in approvals)))
        conditions = state.host_reasons(model.policy, request.host_id, now, seen) if seen is not None else []
        attestation = attested.reasons if attested is not None else ()
        return evaluate(
            model.policy,
            request,
            received_at,
            approvals,
            state.people,
            state.hosts,
            now,
            frozen,
            conditions=conditions,
            attestation=attestation,
        )

    def _request(self, request_id: str) -> tuple[ReleaseRequest, str, datetime]:
        with self.store.transaction(write=False) as tx:
            row = tx.request(request_id)
        if row is None:
            raise NotFoundError(f"no release request {request_id[:16]}")
        message, state_name, received_at = row
        request = ReleaseRequest.parse(SignedMessage.from_json(message, "stored request"))
        return request, state_name, parse_time(received_at, "received_at")

    def _approvals(self, request_id: str) -> list[Approval]:
        with self.store.transaction(write=False) as tx:
            rows = tx.approvals(request_id)
        return _parse_approvals(rows)

    def _provider_for(self, key: WrappedKey) -> KeyProvider:
        for provider in self.providers:
            if provider.provider == key.provider and provider.key_id == key.key_id:
                return provider
        raise UnavailableError(f"no key provider for {key.provider}:{key.key_id} is configured")


def _parse_approvals(rows: list[str]) -> list[Approval]:
    return [Approval.parse(SignedMessage.from_json(message, "stored approval")) for message in rows]


def _not_pending(request_id: str, state: str) -> str:
    return f"request {request_id[:16]} is {state}, not pending"
