"""The library gate without HTTP: a library caller gets exactly the checks an HTTP caller gets.

Every administrative change is authorised by the ledger's officers (two to grant, one to take away); the
service key is no officer; and replay never applies an entry it cannot verify.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from strongroom.custody import admin
from strongroom.custody.envelope import CoSigned
from strongroom.custody.errors import (
    AlreadyExistsError,
    CustodyError,
    MessageError,
    NotAuthorisedError,
    UnverifiableLedgerError,
)
from strongroom.custody.protocol import Authority, Officer
from strongroom.custody.service import CustodyService
from strongroom.custody.store import CustodyStore
from strongroom.ledger.entries import make_entry
from strongroom.ledger.log import Ledger
from strongroom.people import PeopleError, SignalKind
from strongroom.signing import Signer


@dataclass
class Gate:
    data: Path
    ledger: Ledger
    store: CustodyStore
    service: CustodyService
    service_key: Signer
    officers: dict[str, Signer]

    def change(self, proposal: admin.Proposal, *names: str) -> dict[str, object]:
        return self.service.admin(admin.propose(proposal, [self.officers[n] for n in names or ("olga", "oscar")]))

    def restart(self) -> CustodyService:
        self.service = CustodyService(self.store, self.ledger, self.service_key, [])
        return self.service


def enrolment(person: str, key: Signer | None = None, tier: int = 3) -> admin.Proposal:
    return admin.enrol_person(
        person,
        name=person.title(),
        public_key=(key or Signer.generate("ed25519")).verifier.pem().decode(),
        position="engineer",
        tier=tier,
        custodian=False,
        vetted_on=date.today() - timedelta(days=5),
    )


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    officers = {name: Signer.generate("ed25519") for name in ("olga", "oscar", "otto")}
    authority = Authority(tuple(Officer(n, k.verifier) for n, k in officers.items()), 2)
    ledger = Ledger.open(tmp_path)
    store = CustodyStore.for_data_dir(tmp_path)
    service_key = Signer.generate("ed25519")
    service = CustodyService(store, ledger, service_key, [], genesis=authority)
    yield Gate(tmp_path, ledger, store, service, service_key, officers)
    store.close()
    ledger.close()


def test_granting_needs_two_distinct_officers_and_taking_away_needs_one(gate: Gate) -> None:
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers, signed by 1"):
        gate.change(enrolment("alice"), "olga")
    done = gate.change(enrolment("alice"), "olga", "oscar")
    assert done["officers"] == ["olga", "oscar"] and "alice" in gate.service.state.people.people
    gate.change(admin.raise_signal("alice", SignalKind.FINANCIAL), "otto")
    assert not gate.service.state.people.standing("alice", gate.service.clock()).active
    gate.change(admin.offboard("alice"), "olga")
    assert gate.service.state.people.get("alice").offboarded


def test_the_service_key_is_not_an_officer(gate: Gate) -> None:
    with pytest.raises(NotAuthorisedError, match="not an officer"):
        gate.service.admin(admin.propose(enrolment("mallory"), [gate.service_key, gate.officers["olga"]]))
    assert "mallory" not in gate.service.state.people.people


def test_changes_are_single_use_and_expire(gate: Gate) -> None:
    signed = admin.propose(enrolment("alice"), [gate.officers["olga"], gate.officers["oscar"]])
    gate.service.admin(signed)
    with pytest.raises(MessageError, match="replayed"):
        gate.service.admin(signed)
    late = admin.propose(enrolment("bob"), [gate.officers["olga"], gate.officers["oscar"]], timedelta(minutes=1))
    real = gate.service.clock
    gate.service.clock = lambda: real() + timedelta(minutes=2)
    with pytest.raises(MessageError, match="expired"):
        gate.service.admin(late)


def test_a_refused_change_changes_nothing(gate: Gate) -> None:
    gate.change(enrolment("alice"))
    size = gate.ledger.size
    with pytest.raises(PeopleError, match="already enrolled"):
        gate.change(enrolment("alice"))
    with pytest.raises(PeopleError, match="cannot clear their own signal"):
        gate.change(admin.clear_signal("alice", "sig-1", reviewer="alice"))
    assert gate.ledger.size == size


def test_the_officers_change_only_by_their_own_quorum(gate: Gate) -> None:
    newcomer = Signer.generate("ed25519")
    officers = (Officer("olga", gate.officers["olga"].verifier), Officer("nina", newcomer.verifier))
    with pytest.raises(NotAuthorisedError, match="needs 2"):
        gate.change(admin.change_authority(Authority(officers, 2)), "olga")
    gate.change(admin.change_authority(Authority(officers, 2)), "olga", "oscar")
    gate.officers["nina"] = newcomer
    gate.change(enrolment("alice"), "olga", "nina")
    with pytest.raises(NotAuthorisedError, match="not an officer"):
        gate.change(enrolment("bob"), "olga", "oscar")
    assert gate.restart().state.authority is not None
    assert [o.name for o in gate.service.state.authority.officers] == ["olga", "nina"]  # type: ignore[union-attr]


def test_replay_rebuilds_the_same_state(gate: Gate) -> None:
    gate.change(enrolment("alice"))
    gate.change(admin.raise_signal("alice", SignalKind.TRAVEL), "otto")
    before = gate.service.state.people.standing("alice", gate.service.clock())
    after = gate.restart().state.people.standing("alice", gate.service.clock())
    assert before == after and not after.active and gate.service.state.problems == []


def test_replay_refuses_what_it_cannot_verify_and_stops_releases_but_starts(gate: Gate) -> None:
    """An insider with the service key, an appender key or write access to the database appends entries
    directly; none of them changes the registry, each is named by index, and releases stop."""
    appender = Signer.generate("ed25519")
    mallory = Signer.generate("ed25519")
    one_officer = admin.propose(enrolment("mallory", mallory, 5), [gate.officers["olga"]])
    forged = [
        # an appender writes a people entry, with a real-looking two-officer authorisation from elsewhere
        make_entry("person.changed", {"person": "mallory", "change": "enrol", "authorisation": {}}, appender),
        # the service key with one officer's signature
        make_entry(
            "person.changed",
            {"person": "mallory", "change": "enrol", "authorisation": one_officer.cosigned.to_json()},
            gate.service_key,
        ),
        # the service key and a fabricated co-signature
        make_entry(
            "person.changed",
            {
                "person": "mallory",
                "change": "enrol",
                "authorisation": CoSigned(
                    one_officer.cosigned.payload, ((gate.officers["oscar"].key_id, b"\x00" * 64),)
                ).to_json(),
            },
            gate.service_key,
        ),
        # a crafted body that once stopped every later start
        make_entry(
            "person.changed", {"person": "x", "change": "enrol", "authorisation": {"payload": 1}}, gate.service_key
        ),
    ]
    start = gate.ledger.size
    for raw in forged:
        gate.ledger.append(raw)
    service = gate.restart()
    assert "mallory" not in service.state.people.people
    assert [p.index for p in service.state.problems] == list(range(start, start + len(forged)))
    reasons = [p.reason for p in service.state.problems]
    assert "not by the custody service" in reasons[0]
    assert "needs 2 distinct officers" in reasons[1]
    assert "does not verify" in reasons[2]
    with pytest.raises(UnverifiableLedgerError, match=f"entries at {start}"):
        service.release("00" * 32, service_fetch_placeholder())


def service_fetch_placeholder() -> object:
    """Releases stop before anything is read: any fetch will do for the check above."""
    from strongroom.custody.protocol import new_fetch

    return new_fetch("00" * 32, Signer.generate("ed25519"))


def test_a_body_differing_from_what_the_officers_signed_is_refused(gate: Gate) -> None:
    signed = admin.propose(enrolment("alice", tier=1), [gate.officers["olga"], gate.officers["oscar"]])
    body = {"person": "alice", "change": "enrol", "authorisation": signed.cosigned.to_json()}
    gate.ledger.append(make_entry("person.changed", {**body, "person": "alicia"}, gate.service_key))
    service = gate.restart()
    assert service.state.problems and "differs from the change its officers signed" in service.state.problems[0].reason


def test_a_server_with_another_service_key_will_not_start_on_this_ledger(gate: Gate) -> None:
    with pytest.raises(CustodyError, match="did not write the ledger's custody entries"):
        CustodyService(gate.store, gate.ledger, Signer.generate("ed25519"), [])


def test_genesis_happens_once(gate: Gate) -> None:
    with pytest.raises(AlreadyExistsError):
        gate.service.state.genesis(gate.service.state.authority)  # type: ignore[arg-type]


def test_replay_pages_through_the_whole_log(gate: Gate) -> None:
    """An offboarding behind 100,000 other people entries still lands after a restart (replay has no cap;
    it once read the first 100,000 and stopped)."""
    from strongroom.ledger import merkle
    from strongroom.ledger.entries import parse_entry

    gate.change(enrolment("alice"))
    junk = parse_entry(
        make_entry("person.changed", {"person": "x", "change": "enrol", "authorisation": {}}, gate.service_key)
    )
    start, count = gate.ledger.size, 100_001
    gate.ledger.store.append_batch(start, [junk] * count, [merkle.leaf_hash(junk.raw)] * count)
    gate.ledger.close()
    gate.ledger = Ledger.open(gate.data)
    gate.restart()
    gate.change(admin.offboard("alice"), "olga")
    restarted = gate.restart()
    assert gate.ledger.size == start + count + 1 and len(restarted.state.problems) == count
    assert restarted.state.people.get("alice").offboarded
