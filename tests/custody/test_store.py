"""The custody store on SQLite (group commit) and PostgreSQL: every write succeeds or fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strongroom.custody.errors import CustodyError, MessageError, ReleaseConflictError, UnavailableError
from strongroom.custody.store import CustodyStore, DuplicateError, Tx

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CustodyStore]:
    url = str(tmp_path / "custody.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = CustodyStore(url)
    yield opened
    opened.close()


def nonces(store: CustodyStore) -> set[str]:
    with store.transaction(write=False) as tx:
        return {row[0] for row in tx.all("SELECT nonce FROM custody_nonces")}


def insert_then(nonce: str, fail: BaseException | None) -> Callable[[Tx], str]:
    """A unit that writes a row and then, if told to, fails: its row must not survive."""

    def unit(tx: Tx) -> str:
        tx.execute("INSERT INTO custody_nonces VALUES (?, ?)", (nonce, "t"))
        if fail is not None:
            raise fail
        return nonce

    return unit


def run_together(store: CustodyStore, units: list[Callable[[Tx], str]]) -> list[object]:
    """Run every unit from its own thread; on SQLite hold the writer until all are queued (one shared commit)."""
    outcomes: list[object] = [None] * len(units)

    def call(i: int) -> None:
        try:
            outcomes[i] = store.write(units[i])
        except BaseException as exc:  # the test inspects whatever each caller got
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(units))]
    if store.url.endswith(".sqlite3"):
        with store._lock.hold(urgent=True):
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(store._queue) < len(units):
                assert time.monotonic() < deadline, "units never queued"
                time.sleep(0.001)
    else:
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_units_in_one_commit_succeed_or_fail_alone(store: CustodyStore) -> None:
    store.write(insert_then("taken", None))
    units = [
        insert_then("a", None),
        insert_then("b", CustodyError("b refused")),
        insert_then("taken", None),  # a replay: unique violation
        insert_then("c", None),
        insert_then("d", MessageError("d malformed")),
    ]
    outcomes = run_together(store, units)
    assert outcomes[0] == "a" and outcomes[3] == "c"
    assert isinstance(outcomes[1], CustodyError) and str(outcomes[1]) == "b refused"
    assert isinstance(outcomes[2], DuplicateError)
    assert isinstance(outcomes[4], MessageError)
    assert nonces(store) == {"taken", "a", "c"}


def test_an_interrupted_commit_fails_every_unit_and_writes_nothing(tmp_path: Path) -> None:
    store = CustodyStore(str(tmp_path / "custody.sqlite3"))
    units = [insert_then("x", None), insert_then("y", KeyboardInterrupt()), insert_then("z", None)]
    outcomes = run_together(store, units)
    assert isinstance(outcomes[1], KeyboardInterrupt)
    for other in (outcomes[0], outcomes[2]):
        assert isinstance(other, UnavailableError) and "not committed" in str(other)
    assert nonces(store) == set()
    assert store.write(insert_then("after", None)) == "after"  # the store is usable afterwards
    store.close()


def test_exactly_one_claim_wins(store: CustodyStore) -> None:
    store.write(lambda tx: tx.insert_request("r", "m", "p", "{}", "t"))

    def claim(tx: Tx) -> str:
        tx.claim("r")
        return "won"

    outcomes = run_together(store, [claim] * 8)
    assert outcomes.count("won") == 1
    assert all(isinstance(o, ReleaseConflictError) for o in outcomes if o != "won")
    store.write(lambda tx: tx.unclaim("r"))
    assert store.write(lambda tx: tx.request_state("r")) == "pending"


def test_a_release_record_keeps_what_the_host_collects(store: CustodyStore) -> None:
    store.write(lambda tx: tx.insert_request("r", "m", "p", "{}", "t"))
    store.write(lambda tx: tx.record_release("r", None, 7, "t"))  # logged, not yet delivered
    assert store.write(lambda tx: tx.release("r")) == (None, 7)
    store.write(lambda tx: tx.record_release("r", '{"wrapped_key": "k"}', 7, "t"))
    assert store.write(lambda tx: tx.release("r")) == ('{"wrapped_key": "k"}', 7)
    assert store.write(lambda tx: tx.request_state("r")) == "released"


def test_a_replayed_nonce_is_named_a_replay(store: CustodyStore) -> None:
    store.write(lambda tx: tx.spend_nonce("n-1", "2026-11-23T12:00:00Z", "release fetch"))
    with pytest.raises(MessageError, match="release fetch: replayed"):
        store.write(lambda tx: tx.spend_nonce("n-1", "2026-11-23T12:00:00Z", "release fetch"))
    assert nonces(store) == {"n-1"}


def test_writes_from_many_threads_all_land(store: CustodyStore) -> None:
    def writer(k: int) -> None:
        for i in range(25):
            store.write(insert_then(f"{k}-{i}", None), urgent=i % 2 == 0)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nonces(store) == {f"{k}-{i}" for k in range(8) for i in range(25)}
