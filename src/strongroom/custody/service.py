"""The custody service: requests, approvals and single-use key releases, logged before they happen.

Every state change passes four gates in order: the message is well-formed and unexpired, it is signed by
the enrolled person (or host) it names, its nonce is new, and the policy holds. A release claims the
request in the database first (one racer wins), then unwraps the data key inside the provider, wraps it
to the host's ephemeral key, and appends ``key.released`` to the ledger; only after that append is
durable does the caller get the wrapped key. Any failure returns the request to pending: fail closed.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from strongroom.custody.errors import CustodyError, MessageError, PolicyError, ReleaseConflictError, UnavailableError
from strongroom.custody.messages import (
    SignedMessage,
    format_time,
    parse_time,
    utc_now,
    validate_approval,
    validate_request,
)
from strongroom.custody.policy import Decision, ModelPolicy, evaluate
from strongroom.custody.ports import EventLog
from strongroom.custody.release_crypto import release_info
from strongroom.custody.store import PENDING, RELEASED, RELEASING, CustodyStore, DuplicateError, Tx, dumps
from strongroom.errors import StrongroomError
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.hpke import public_from_bytes, seal_to_host
from strongroom.keys.provider import KeyProvider, WrappedKey
from strongroom.keys.shamir import ReencryptedShare, ShamirBlob
from strongroom.memory import wipe
from strongroom.people.errors import PeopleError
from strongroom.people.registry import Registry
from strongroom.signing import Signer, SigningKeyError, Verifier

FETCH_TYPE = "strongroom.release-fetch/v1"
SHAMIR = "shamir"
LOADED_TYPE = "strongroom.model-loaded/v1"


class CustodyService:
    """Custody logic over a store, an event log, key providers and the people registry it replays."""

    def __init__(
        self,
        store: CustodyStore,
        log: EventLog,
        operator: Signer,
        providers: list[KeyProvider],
        *,
        required_agreement: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.log = log
        self.operator = operator
        self.providers = providers
        self.clock = clock
        self._lock = threading.RLock()
        self._models: dict[str, tuple[ModelPolicy, WrappedKey]] = {}
        self.registry = Registry(required_agreement)
        for _, body, _ in log.events("person.changed"):
            self.registry.apply(body)
        self.settled = self.settle_interrupted_releases()

    def settle_interrupted_releases(self) -> dict[str, str]:
        """Settle requests a crash left claimed (``releasing``) by what the ledger says happened.

        The ledger append is the durable fact of a release: with a ``key.released`` entry the request is
        released (its record rebuilt from the entry); without one no key left, and it is pending again.
        Returns request id -> the state it was settled to.
        """
        with self.store.transaction(write=False) as tx:
            stuck = [row[0] for row in tx.all("SELECT request_id FROM custody_requests WHERE state = ?", (RELEASING,))]
        if not stuck:
            return {}
        logged = {body.get("request_id"): (index, body) for index, body, _ in self.log.events("key.released")}
        settled: dict[str, str] = {}
        for request_id in stuck:
            entry = logged.get(request_id)

            def settle(tx: Tx, request_id: str = request_id, entry: tuple[int, dict[str, Any]] | None = entry) -> str:
                if entry is None:
                    tx.execute("UPDATE custody_requests SET state = ? WHERE request_id = ?", (PENDING, request_id))
                    return PENDING
                index, body = entry
                tx.execute(
                    "INSERT INTO custody_releases VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (request_id, dumps({"from_ledger": body}), index, body.get("released_at", "")),
                )
                tx.execute("UPDATE custody_requests SET state = ? WHERE request_id = ?", (RELEASED, request_id))
                return RELEASED

            settled[request_id] = self.store.write(settle)
        return settled

    # -- people --------------------------------------------------------------------------------

    def change_person(self, change: dict[str, Any], authorisation: SignedMessage | None = None) -> dict[str, Any]:
        """Validate a clearance change against a copy of the registry, log it, then apply it.

        ``authorisation`` is the security officer's signed message when the change came over HTTP; it is
        logged inside the entry so auditors can check who authorised it.
        """
        body = dict(change)
        if authorisation is not None:
            body["authorised_by"] = authorisation.to_json()
        with self._lock:
            trial = copy.deepcopy(self.registry)
            trial.apply(change)
            if authorisation is not None:
                self._use_nonce(str(authorisation.payload.get("nonce")), "person change")
            receipt = self.log.append_event("person.changed", body, self.operator)
            self.registry = trial
            return receipt

    # -- models --------------------------------------------------------------------------------

    def register_model(
        self, policy: ModelPolicy, key: WrappedKey, registration: dict[str, Any], signer: Signer
    ) -> dict[str, Any]:
        """Record a model's release policy and wrapped data key; log the registration and the policy."""
        if key.provider != SHAMIR:
            self._provider_for(key)
        with self.store.transaction() as tx:
            if tx.one("SELECT 1 FROM custody_models WHERE model_id = ?", (policy.model_id,)):
                raise CustodyError(f"model {policy.model_id} is already registered")
            receipt = self.log.append_event("model.registered", registration, signer)
            self.log.append_event(
                "policy.changed", {"scope": "model-release", "policy": policy.to_json()}, self.operator
            )
            tx.execute(
                "INSERT INTO custody_models VALUES (?, ?, ?, ?)",
                (policy.model_id, dumps(policy.to_json()), dumps(key.to_json()), format_time(self.clock())),
            )
        return receipt

    def register_signed(self, message: SignedMessage) -> dict[str, Any]:
        """Register from an officer's signed registration message (already checked by the caller)."""
        payload = message.payload
        policy_fields = payload["policy"]
        if not isinstance(policy_fields, dict) or not isinstance(payload["provenance"], dict):
            raise MessageError("model registration: policy and provenance must be objects")
        policy = ModelPolicy(
            payload["model_id"],
            **{k: policy_fields[k] for k in policy_fields if k in ("required_tier", "approvals", "delay_seconds")},
        )
        key = WrappedKey.from_json(payload["key"])
        self._use_nonce(str(payload["nonce"]), "model registration")
        registration = {
            "model_id": policy.model_id,
            "signer": message.signer,
            "provenance": payload["provenance"],
            "key": {"provider": key.provider, "key_id": key.key_id},
            "authorised_by": message.to_json(),
        }
        return self.register_model(policy, key, registration, self.operator)

    def model(self, model_id: str) -> tuple[ModelPolicy, WrappedKey]:
        """A registered model's policy and wrapped key (cached: a registration is never changed)."""
        cached = self._models.get(model_id)
        if cached is not None:
            return cached
        with self.store.transaction(write=False) as tx:
            row = tx.one("SELECT policy, key_ref FROM custody_models WHERE model_id = ?", (model_id,))
        if row is None:
            raise CustodyError(f"model {model_id} is not registered for custody")
        found = ModelPolicy(**json.loads(row[0])), WrappedKey.from_json(json.loads(row[1]))
        self._models[model_id] = found
        return found

    # -- requests and approvals ----------------------------------------------------------------

    def submit_request(self, message: SignedMessage) -> str:
        now = self.clock()
        validate_request(message.payload, now)
        requester = message.payload["requester"]
        self._verify_person(message, requester, "release request")
        self.model(message.payload["model_id"])
        try:
            Verifier.from_pem(message.payload["host"]["identity"].encode(), "host identity")
        except SigningKeyError as exc:
            raise MessageError(f"release request: {exc}") from None
        standing = self.registry.standing(requester, now)
        if not standing.active:
            raise PolicyError([f"requester {requester} has no access: {', '.join(standing.reasons)}"])
        request_id = message.digest
        row = (request_id, message.payload["model_id"], requester, dumps(message.to_json()), format_time(now), PENDING)

        def record(tx: Tx) -> None:
            record_nonce(tx, message.payload["nonce"], now, "release request")
            tx.execute("INSERT INTO custody_requests VALUES (?, ?, ?, ?, ?, ?)", row)

        try:
            self.store.write(record)
        except DuplicateError:
            raise MessageError("release request: replayed (its nonce was already used)") from None
        return request_id

    def submit_approval(self, request_id: str, message: SignedMessage) -> int:
        """Record one approval or denial; returns how many approvals the request now has."""
        now = self.clock()
        validate_approval(message.payload, now)
        approver = message.payload["approver"]
        self._verify_person(message, approver, "approval")
        if message.payload["request_id"] != request_id:
            raise MessageError("approval: signed for another request (transplanted)")
        request, state, _ = self._request(request_id)
        if message.payload["model_id"] != request.payload["model_id"]:
            raise MessageError("approval: names another model than the request")
        if state != PENDING:
            raise CustodyError(not_pending(request_id, state))
        if approver == request.payload["requester"]:
            raise PolicyError([f"{approver} cannot approve their own request"])
        standing = self.registry.standing(approver, now)
        if not standing.active:
            raise PolicyError([f"approver {approver} has no access: {', '.join(standing.reasons)}"])
        if "share" in message.payload:
            _, key = self.model(request.payload["model_id"])
            if key.provider != SHAMIR:
                raise MessageError("approval: carries a custodian share, but the model's key is not split")
            try:
                share = ReencryptedShare.from_json(message.payload["share"])
            except KeyProviderError as exc:
                raise MessageError(f"approval: malformed custodian share: {exc}") from None
            if share.key_id != key.key_id:
                raise MessageError("approval: the custodian share is for another key")
        row = (message.digest, request_id, approver, dumps(message.to_json()), format_time(now))

        def record(tx: Tx) -> int:
            current = tx.one("SELECT state FROM custody_requests WHERE request_id = ?", (request_id,))
            if current is None or current[0] != PENDING:  # released (or being released) since the check above
                raise CustodyError(not_pending(request_id, current[0] if current else "gone"))
            record_nonce(tx, message.payload["nonce"], now, "approval")
            tx.execute("INSERT INTO custody_approvals VALUES (?, ?, ?, ?, ?)", row)
            count = tx.one("SELECT COUNT(*) FROM custody_approvals WHERE request_id = ?", (request_id,))
            return int(count[0]) if count else 0

        try:
            return self.store.write(record)
        except DuplicateError:
            raise MessageError(f"approval: replayed, or {approver} already decided on this request") from None

    def pending(self, person: str | None = None) -> list[dict[str, Any]]:
        """Pending requests (those ``person`` has not yet decided on, if given), newest last."""
        with self.store.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT request_id, message, received_at FROM custody_requests WHERE state = ? ORDER BY received_at",
                (PENDING,),
            )
            decided = {
                r[0] for r in tx.all("SELECT request_id FROM custody_approvals WHERE approver = ?", (person or "",))
            }
        out = []
        for request_id, message, received_at in rows:
            if request_id in decided:
                continue
            payload = json.loads(message)["payload"]
            if person is not None and payload["requester"] == person:
                continue
            item = {"request_id": request_id, "received_at": received_at, "request": json.loads(message)}
            _, key = self.model(payload["model_id"])
            if key.provider == SHAMIR:
                item["key"] = key.to_json()
            out.append(item)
        return out

    def status(self, request_id: str) -> dict[str, Any]:
        request, state, received_at = self._request(request_id)
        approvals = self._approvals(request_id)
        policy, _ = self.model(request.payload["model_id"])
        decision = evaluate(policy, request, received_at, approvals, self.registry, self.clock())
        return {
            "request_id": request_id,
            "state": state,
            "model_id": request.payload["model_id"],
            "requester": request.payload["requester"],
            "approvals": [a.payload["approver"] for a in approvals],
            "ready": decision.allowed,
            "reasons": list(decision.reasons),
        }

    # -- release -------------------------------------------------------------------------------

    def release(self, request_id: str, fetch: SignedMessage) -> dict[str, Any]:
        """Release the data key to the requesting host, exactly once, logged before it leaves."""
        now = self.clock()
        request, _, received_at = self._request(request_id)
        self._verify_fetch(fetch, request, request_id, now)
        policy, key = self.model(request.payload["model_id"])

        def claim(tx: Tx) -> tuple[list[SignedMessage], Decision]:
            """In one commit: claim the request (one racer wins), re-check the policy, spend the fetch nonce."""
            if (
                tx.execute(
                    "UPDATE custody_requests SET state = ? WHERE request_id = ? AND state = ?",
                    (RELEASING, request_id, PENDING),
                )
                != 1
            ):
                raise ReleaseConflictError(f"request {request_id[:16]} was already released or is being released")
            approvals = approvals_of(tx, request_id)
            decision = evaluate(policy, request, received_at, approvals, self.registry, now)
            if not decision.allowed:
                raise PolicyError(list(decision.reasons))
            record_nonce(tx, fetch.payload["nonce"], now, "release fetch")
            return approvals, decision

        approvals, decision = self.store.write(claim, urgent=True)
        try:
            return self._release_claimed(request, request_id, key, approvals, decision, now)
        except BaseException:

            def unclaim(tx: Tx) -> None:
                tx.execute(
                    "UPDATE custody_requests SET state = ? WHERE request_id = ? AND state = ?",
                    (PENDING, request_id, RELEASING),
                )

            self.store.write(unclaim, urgent=True)
            raise

    def _release_claimed(
        self,
        request: SignedMessage,
        request_id: str,
        key: WrappedKey,
        approvals: list[SignedMessage],
        decision: Decision,
        now: datetime,
    ) -> dict[str, Any]:
        payload = request.payload
        host = payload["host"]
        counted = [a for a in approvals if a.payload["approver"] in decision.approvers]
        delivery: dict[str, Any]
        if key.provider == SHAMIR:
            delivery = self._shamir_delivery(key, counted)
        else:
            delivery = self._unwrap_and_seal(key, host, release_info(request_id, payload["model_id"], host["host_id"]))
        body = {
            "model_id": payload["model_id"],
            "request_id": request_id,
            "request": request.to_json(),
            "approvals": [a.to_json() for a in counted],
            "approvers": list(decision.approvers),
            "custodians": list(decision.custodians),
            "host": {
                "host_id": host["host_id"],
                "identity_key_id": Verifier.from_pem(host["identity"].encode()).key_id,
            },
            "key": {"provider": key.provider, "key_id": key.key_id},
            "released_at": format_time(now),
        }
        if "shares" in delivery:
            body["custodian_shares"] = [
                {"index": share["index"], "custodian_public_key": share["custodian_public_key"]}
                for share in delivery["shares"]
            ]
        try:
            receipt = self.log.append_event("key.released", body, self.operator)
        except StrongroomError as exc:
            raise UnavailableError(f"ledger append failed, nothing released: {exc}") from None
        bundle = {
            "request_id": request_id,
            "model_id": payload["model_id"],
            "host_id": host["host_id"],
            **delivery,
            "key": key.to_json(),
            "approvers": list(decision.approvers),
            "ledger": receipt,
        }
        record = (
            request_id,
            dumps({k: v for k, v in bundle.items() if k != "wrapped_key"}),
            int(receipt["index"]),
            format_time(now),
        )

        def released(tx: Tx) -> None:
            tx.execute("INSERT INTO custody_releases VALUES (?, ?, ?, ?)", record)
            tx.execute("UPDATE custody_requests SET state = ? WHERE request_id = ?", (RELEASED, request_id))

        self.store.write(released, urgent=True)
        return bundle

    def _unwrap_and_seal(self, key: WrappedKey, host: dict[str, Any], info: bytes) -> dict[str, Any]:
        """Unwrap inside the provider and seal the data key to the host's ephemeral key (HPKE)."""
        provider = self._provider_for(key)
        try:
            data_key = provider.unwrap(key)
        except StrongroomError as exc:
            raise UnavailableError(f"key provider {key.provider}:{key.key_id} could not unwrap: {exc}") from None
        except Exception as exc:
            raise UnavailableError(f"key provider {key.provider}:{key.key_id} unavailable: {exc}") from None
        try:
            wrapped = seal_to_host(public_from_bytes(base64.b64decode(host["ephemeral"])), data_key, info)
        finally:
            wipe(data_key)
        return {"wrapped_key": base64.b64encode(wrapped).decode()}

    def _shamir_delivery(self, key: WrappedKey, counted: list[SignedMessage]) -> dict[str, Any]:
        """A split key is never unwrapped here: forward the custodians' shares, re-encrypted to the host."""
        threshold = ShamirBlob.parse(key).threshold
        shares = [a.payload["share"] for a in counted if "share" in a.payload]
        indices = {ReencryptedShare.from_json(share).index for share in shares}
        if len(indices) < threshold:
            raise PolicyError([f"{len(indices)} of {threshold} custodian key shares among the approvals"])
        return {"shares": shares}

    def record_load(self, request_id: str, loaded: SignedMessage) -> dict[str, Any]:
        """Log ``model.loaded`` signed by the host that received the release."""
        request, state, _ = self._request(request_id)
        if state != RELEASED:
            raise CustodyError(f"request {request_id[:16]} has not been released")
        host = Verifier.from_pem(request.payload["host"]["identity"].encode(), "host identity")
        loaded.verify(host, "model.loaded")
        body = loaded.payload
        if body.get("type") != LOADED_TYPE or body.get("request_id") != request_id:
            raise MessageError("model.loaded: wrong type or request id")
        if body.get("model_id") != request.payload["model_id"]:
            raise MessageError(
                f"model.loaded: host loaded {body.get('model_id')}, "
                f"but the release was for {request.payload['model_id']}"
            )
        entry = {
            "model_id": body["model_id"],
            "request_id": request_id,
            "host": request.payload["host"]["host_id"],
            "loaded_at": body.get("loaded_at"),
            "statement": loaded.to_json(),
        }
        return self.log.append_event("model.loaded", entry, self.operator)

    # -- helpers -------------------------------------------------------------------------------

    def _use_nonce(self, nonce: str, what: str) -> None:
        """Record a nonce; a second use is a replay."""
        now = self.clock()
        self.store.write(lambda tx: record_nonce(tx, nonce, now, what))

    def _verify_person(self, message: SignedMessage, person_id: str, what: str) -> None:
        try:
            person = self.registry.get(person_id)
        except PeopleError as exc:
            raise MessageError(f"{what}: {exc}") from None
        message.verify(person.verifier, what)

    def _verify_fetch(self, fetch: SignedMessage, request: SignedMessage, request_id: str, now: datetime) -> None:
        payload = fetch.payload
        if (
            set(payload) != {"type", "request_id", "nonce", "issued_at", "expires_at"}
            or payload.get("type") != FETCH_TYPE
        ):
            raise MessageError("release fetch: malformed")
        if payload["request_id"] != request_id:
            raise MessageError("release fetch: signed for another request")
        from strongroom.custody.messages import check_window

        check_window(payload, now, "release fetch")
        host = Verifier.from_pem(request.payload["host"]["identity"].encode(), "host identity")
        fetch.verify(host, "release fetch (only the requesting host may fetch)")

    def _request(self, request_id: str) -> tuple[SignedMessage, str, datetime]:
        with self.store.transaction(write=False) as tx:
            row = tx.one("SELECT message, state, received_at FROM custody_requests WHERE request_id = ?", (request_id,))
        if row is None:
            raise CustodyError(f"no release request {request_id[:16]}")
        return SignedMessage.from_json(row[0], "stored request"), row[1], parse_time(row[2], "received_at")

    def _approvals(self, request_id: str) -> list[SignedMessage]:
        with self.store.transaction(write=False) as tx:
            return approvals_of(tx, request_id)

    def _provider_for(self, key: WrappedKey) -> KeyProvider:
        for provider in self.providers:
            if provider.provider == key.provider and provider.key_id == key.key_id:
                return provider
        raise UnavailableError(f"no key provider for {key.provider}:{key.key_id} is configured")


def record_nonce(tx: Tx, nonce: str, now: datetime, what: str) -> None:
    """Spend ``nonce`` inside the caller's transaction; a second use is a replay."""
    if tx.execute("INSERT INTO custody_nonces VALUES (?, ?) ON CONFLICT DO NOTHING", (nonce, format_time(now))) != 1:
        raise MessageError(f"{what}: replayed (its nonce was already used)")


def approvals_of(tx: Tx, request_id: str) -> list[SignedMessage]:
    """Every approval and denial of a request, in the order they arrived."""
    rows = tx.all("SELECT message FROM custody_approvals WHERE request_id = ? ORDER BY received_at", (request_id,))
    return [SignedMessage.from_json(r[0], "stored approval") for r in rows]


def not_pending(request_id: str, state: str) -> str:
    return f"request {request_id[:16]} is {state}, not pending"
