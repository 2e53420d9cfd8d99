"""Custody's working records: requests, approvals, used nonces and releases, in SQLite or PostgreSQL.

What the ledger does not hold (requests waiting for approval, message nonces, the sealed key each host
collects) lives here. The store enforces the invariants that must survive races and restarts in the
database itself: a nonce is accepted once, an approver decides on a request once, and a request is released
at most once (a conditional update claims it; exactly one racer wins). Every statement is a named method
of ``Tx``: callers compose units of work from them and never write SQL.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from strongroom.custody.errors import CustodyError, MessageError, ReleaseConflictError, UnavailableError
from strongroom.sqlite_wal import Checkpointer, connect_wal

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS custody_requests (
        request_id TEXT PRIMARY KEY, model_id TEXT NOT NULL, requester TEXT NOT NULL, message TEXT NOT NULL,
        received_at TEXT NOT NULL, state TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS custody_approvals (
        approval_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, approver TEXT NOT NULL, message TEXT NOT NULL,
        received_at TEXT NOT NULL, UNIQUE (request_id, approver))""",
    """CREATE TABLE IF NOT EXISTS custody_shares (
        request_id TEXT NOT NULL, custodian TEXT NOT NULL, share_index INTEGER NOT NULL, share TEXT NOT NULL,
        received_at TEXT NOT NULL, PRIMARY KEY (request_id, custodian), UNIQUE (request_id, share_index))""",
    """CREATE TABLE IF NOT EXISTS custody_details (
        subject TEXT NOT NULL, ledger_index BIGINT NOT NULL, field TEXT NOT NULL, opening TEXT NOT NULL,
        PRIMARY KEY (ledger_index, field))""",
    """CREATE TABLE IF NOT EXISTS custody_nonces (nonce TEXT PRIMARY KEY, seen_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS custody_releases (
        request_id TEXT PRIMARY KEY, release TEXT NOT NULL, ledger_index BIGINT NOT NULL, released_at TEXT NOT NULL)""",
]

PENDING, RELEASING, RELEASED = "pending", "releasing", "released"

T = TypeVar("T")


class PriorityLock:
    """A mutex that, when released, hands over to waiting urgent holders before ordinary ones.

    Key releases are the step people wait on; under load they should not queue behind request and
    approval bookkeeping for the database's single writer.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent_waiting = 0

    @contextlib.contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._held or (not urgent and self._urgent_waiting):
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent_waiting -= 1
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


class DuplicateError(CustodyError):
    """A unique value (nonce, approval, request) was presented twice: a replay."""


class CustodyStore:
    """Thin SQL layer over sqlite3 or psycopg with one placeholder style (``?``).

    Writes go through ``write(unit)``. On SQLite, units that arrive while another commit is under way
    are run together by the next writer, each inside its own savepoint, and share one fsynced commit
    (group commit): under load a release costs one fsync shared with everyone waiting, not a queue of
    them. Each unit still succeeds or fails alone.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._postgres = url.startswith(("postgresql://", "postgres://"))
        self._lock = PriorityLock()
        self._local = threading.local()
        self._queue_lock = threading.Lock()
        self._queue: list[_Unit[Any]] = []
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)
        self._checkpointer = None if self._postgres else Checkpointer(url)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> CustodyStore:
        return cls(str(Path(data_dir) / "custody.sqlite3"))

    def _connect(self) -> Any:
        try:
            if self._postgres:
                import psycopg

                return psycopg.connect(self.url, autocommit=False, connect_timeout=5)
            return connect_wal(self.url)
        except Exception as exc:
            raise UnavailableError(f"custody database unavailable: {exc}") from None

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """One unit of work; a writing one takes SQLite's write lock at once (BEGIN IMMEDIATE); on SQLite a
        read is a run of autocommit statements."""
        connection = self._connection()
        with _translated(self):
            if self._postgres:
                with connection.transaction():
                    yield Tx(connection.cursor(), True)
            elif not write:
                # Reads run in autocommit: each statement sees a consistent snapshot, and a read costs one
                # call into SQLite rather than three (each one gives up the interpreter lock, see priority.py).
                yield Tx(connection.cursor(), False)
            else:
                # One writer at a time inside this process: SQLite's own busy handler sleeps and backs off,
                # which under load costs far more than waiting on a lock.
                with self._lock.hold(urgent=False):
                    connection.execute("BEGIN IMMEDIATE")
                    try:
                        yield Tx(connection.cursor(), False)
                    except BaseException:
                        connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")

    def write(self, unit: Callable[[Tx], T], urgent: bool = False) -> T:
        """Run ``unit`` in a writing transaction and return its result; it commits alone or not at all.

        ``urgent`` units (key releases) are run first in a shared commit and take the writer first.
        """
        if self._postgres:
            with self.transaction() as tx:
                return unit(tx)
        mine = _Unit(unit, urgent)
        with self._queue_lock:
            self._queue.append(mine)
        # Whoever takes the writer lock commits everything queued so far, its own unit included.
        with self._lock.hold(urgent):
            if not mine.done:
                with self._queue_lock:
                    batch = sorted(self._queue, key=lambda queued: not queued.urgent)
                    self._queue.clear()
                self._commit(batch)
        return mine.outcome()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        """Run each unit in its own savepoint and commit once.

        A unit that raises an ``Exception`` is rolled back alone and gets its exception. One that raises
        anything else (an interrupt) abandons the batch: it gets that, the others "not committed". A failed
        ``COMMIT`` fails every unit.
        """
        connection = self._connection()
        results: list[tuple[Any, Exception | None]] = []
        failure: Exception | None = None
        interrupt: BaseException | None = None
        try:
            with _translated(self):
                connection.execute("BEGIN IMMEDIATE")
                try:
                    # A unit alone needs no savepoint: if it fails, the whole transaction is rolled back. (Every
                    # statement gives up the interpreter lock; under load each costs a wait to get it back.)
                    alone = len(batch) == 1
                    for queued in batch:
                        if not alone:
                            connection.execute("SAVEPOINT unit")
                        try:
                            with _translated(self):
                                results.append((queued.unit(Tx(connection.cursor(), False)), None))
                        except Exception as exc:
                            connection.execute("ROLLBACK" if alone else "ROLLBACK TO unit")
                            results.append((None, exc))
                        if not alone:
                            connection.execute("RELEASE unit")
                    if connection.in_transaction:
                        connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
        except Exception as exc:
            failure = exc
        except BaseException as exc:
            interrupt = exc
        for position, queued in enumerate(batch):
            if failure is not None:
                queued.error = failure
            elif interrupt is not None:
                if position == len(results):  # the unit that was running
                    queued.error = interrupt
            else:
                queued.value, queued.error = results[position]
            queued.done = True
        if interrupt is not None and len(results) == len(batch):
            raise interrupt  # interrupted while committing: no unit to hand it to

    def close(self) -> None:
        """Close this thread's connection and stop the checkpointer."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class _Unit(Generic[T]):
    """One caller's write waiting for a shared commit, and how it came out."""

    def __init__(self, unit: Callable[[Tx], T], urgent: bool) -> None:
        self.unit = unit
        self.urgent = urgent
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = UnavailableError("custody write was not committed")

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


@contextmanager
def _translated(store: CustodyStore) -> Iterator[None]:
    """Database errors as custody errors: a unique value twice is a replay, anything else is unavailability."""
    try:
        yield
    except CustodyError:
        raise
    except sqlite3.IntegrityError as exc:
        raise DuplicateError(f"already recorded: {exc}") from None
    except sqlite3.Error as exc:
        raise UnavailableError(f"custody database error: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            import psycopg

            store._local.connection = None
            if isinstance(exc, psycopg.errors.UniqueViolation):
                raise DuplicateError(f"already recorded: {exc}") from None
            raise UnavailableError(f"custody database error: {exc}") from None
        raise


class Tx:
    """One transaction's statements (``?`` placeholders on both backends), each a named custody operation."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cursor = cursor
        self.postgres = postgres

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        self.cursor.execute(sql.replace("?", "%s") if self.postgres else sql, params)
        return int(self.cursor.rowcount or 0)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        self.execute(sql, params)
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.execute(sql, params)
        return [tuple(r) for r in self.cursor.fetchall()]

    # -- nonces ------------------------------------------------------------------------------------

    def spend_nonce(self, nonce: str, seen_at: str, what: str) -> None:
        """Spend a message nonce; a second use is a replay."""
        if self.execute("INSERT INTO custody_nonces VALUES (?, ?) ON CONFLICT DO NOTHING", (nonce, seen_at)) != 1:
            raise MessageError(f"{what}: replayed (its nonce was already used)")

    # -- requests ----------------------------------------------------------------------------------

    def insert_request(self, request_id: str, model_id: str, requester: str, message: str, received_at: str) -> None:
        self.execute(
            "INSERT INTO custody_requests VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, model_id, requester, message, received_at, PENDING),
        )

    def request(self, request_id: str) -> tuple[str, str, str] | None:
        """(signed request JSON, state, received_at) of one request."""
        row = self.one("SELECT message, state, received_at FROM custody_requests WHERE request_id = ?", (request_id,))
        return (str(row[0]), str(row[1]), str(row[2])) if row else None

    def request_state(self, request_id: str) -> str | None:
        row = self.one("SELECT state FROM custody_requests WHERE request_id = ?", (request_id,))
        return str(row[0]) if row else None

    def pending_requests(self) -> list[tuple[str, str, str]]:
        """(request id, signed request JSON, received_at) of every pending request, oldest first."""
        rows = self.all(
            "SELECT request_id, message, received_at FROM custody_requests WHERE state = ? ORDER BY received_at",
            (PENDING,),
        )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def requests_in(self, state: str) -> list[str]:
        return [str(r[0]) for r in self.all("SELECT request_id FROM custody_requests WHERE state = ?", (state,))]

    def set_state(self, request_id: str, state: str) -> None:
        self.execute("UPDATE custody_requests SET state = ? WHERE request_id = ?", (state, request_id))

    def claim(self, request_id: str) -> None:
        """Move a pending request to ``releasing``: exactly one of any number of racers succeeds."""
        claimed = self.execute(
            "UPDATE custody_requests SET state = ? WHERE request_id = ? AND state = ?", (RELEASING, request_id, PENDING)
        )
        if claimed != 1:
            raise ReleaseConflictError(f"request {request_id[:16]} was already released or is being released")

    def unclaim(self, request_id: str) -> None:
        """Give back a claim that did not lead to a logged release."""
        self.execute(
            "UPDATE custody_requests SET state = ? WHERE request_id = ? AND state = ?", (PENDING, request_id, RELEASING)
        )

    # -- approvals ---------------------------------------------------------------------------------

    def insert_approval(self, approval_id: str, request_id: str, approver: str, message: str, received_at: str) -> None:
        self.execute(
            "INSERT INTO custody_approvals VALUES (?, ?, ?, ?, ?)",
            (approval_id, request_id, approver, message, received_at),
        )

    def approvals(self, request_id: str) -> list[str]:
        """Every approval and denial of a request (signed JSON), in the order they arrived."""
        rows = self.all(
            "SELECT message FROM custody_approvals WHERE request_id = ? ORDER BY received_at", (request_id,)
        )
        return [str(r[0]) for r in rows]

    # -- personnel details kept off the log ----------------------------------------------------------

    def insert_detail(self, subject: str, ledger_index: int, field: str, opening: str) -> None:
        self.execute("INSERT INTO custody_details VALUES (?, ?, ?, ?)", (subject, ledger_index, field, opening))

    def details(self, subject: str) -> list[tuple[int, str, str]]:
        """(ledger index, field, opening JSON) of every private detail logged about ``subject``."""
        rows = self.all(
            "SELECT ledger_index, field, opening FROM custody_details WHERE subject = ? ORDER BY ledger_index, field",
            (subject,),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- custodians' key shares (only ever for a logged release) ------------------------------------

    def insert_share(self, request_id: str, custodian: str, index: int, share: str, received_at: str) -> None:
        self.execute(
            "INSERT INTO custody_shares VALUES (?, ?, ?, ?, ?)", (request_id, custodian, index, share, received_at)
        )

    def shares(self, request_id: str) -> list[str]:
        """The key shares custodians delivered for a released request (re-encrypted share JSON), in order."""
        rows = self.all("SELECT share FROM custody_shares WHERE request_id = ? ORDER BY share_index", (request_id,))
        return [str(r[0]) for r in rows]

    def delivered_by(self, custodian: str) -> set[str]:
        return {str(r[0]) for r in self.all("SELECT request_id FROM custody_shares WHERE custodian = ?", (custodian,))}

    def released_requests(self) -> list[tuple[str, str, int]]:
        """(request id, signed request JSON, key.released index) of every released request."""
        rows = self.all(
            "SELECT r.request_id, r.message, x.ledger_index FROM custody_requests r"
            " JOIN custody_releases x ON x.request_id = r.request_id WHERE r.state = ? ORDER BY x.ledger_index",
            (RELEASED,),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def count_approvals(self, request_id: str) -> int:
        row = self.one("SELECT COUNT(*) FROM custody_approvals WHERE request_id = ?", (request_id,))
        return int(row[0]) if row else 0

    def decided_by(self, person: str) -> set[str]:
        return {str(r[0]) for r in self.all("SELECT request_id FROM custody_approvals WHERE approver = ?", (person,))}

    # -- releases ----------------------------------------------------------------------------------

    def record_release(self, request_id: str, delivery: str | None, ledger_index: int, released_at: str) -> None:
        """The release is logged: mark the request released and keep what its host collects (if delivered)."""
        self.execute(
            "INSERT INTO custody_releases VALUES (?, ?, ?, ?)"
            " ON CONFLICT (request_id) DO UPDATE SET release = excluded.release",
            (request_id, delivery or "", ledger_index, released_at),
        )
        self.set_state(request_id, RELEASED)

    def release(self, request_id: str) -> tuple[str | None, int] | None:
        """(the delivery its host collects, or None if not yet delivered; the key.released index)."""
        row = self.one("SELECT release, ledger_index FROM custody_releases WHERE request_id = ?", (request_id,))
        return (str(row[0]) or None, int(row[1])) if row else None


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
