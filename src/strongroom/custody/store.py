"""Custody state: registered models, requests, approvals, used nonces and releases, in SQLite or PostgreSQL.

The store enforces the invariants that must survive races and restarts in the database itself: a nonce is
accepted once, an approver approves a request once, and a request is released at most once (a
conditional update claims it; exactly one racer wins).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strongroom.custody.errors import CustodyError, UnavailableError

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS custody_models (
        model_id TEXT PRIMARY KEY, policy TEXT NOT NULL, key_ref TEXT NOT NULL, registered_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS custody_requests (
        request_id TEXT PRIMARY KEY, model_id TEXT NOT NULL, requester TEXT NOT NULL, message TEXT NOT NULL,
        received_at TEXT NOT NULL, state TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS custody_approvals (
        approval_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, approver TEXT NOT NULL, message TEXT NOT NULL,
        received_at TEXT NOT NULL, UNIQUE (request_id, approver))""",
    """CREATE TABLE IF NOT EXISTS custody_nonces (nonce TEXT PRIMARY KEY, seen_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS custody_releases (
        request_id TEXT PRIMARY KEY, release TEXT NOT NULL, ledger_index BIGINT NOT NULL, released_at TEXT NOT NULL)""",
]

PENDING, RELEASING, RELEASED = "pending", "releasing", "released"


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
    """Thin SQL layer over sqlite3 or psycopg with one placeholder style (``?``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._postgres = url.startswith(("postgresql://", "postgres://"))
        self._lock = PriorityLock()
        self._local = threading.local()
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> CustodyStore:
        return cls(str(Path(data_dir) / "custody.sqlite3"))

    def _connect(self) -> Any:
        try:
            if self._postgres:
                import psycopg

                return psycopg.connect(self.url, autocommit=False, connect_timeout=5)
            connection = sqlite3.connect(self.url, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            return connection
        except Exception as exc:
            raise UnavailableError(f"custody database unavailable: {exc}") from None

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self, write: bool = True, urgent: bool = False) -> Iterator[_Tx]:
        """One unit of work; a writing one takes SQLite's write lock at once (BEGIN IMMEDIATE), a read does not."""
        connection = self._connection()
        try:
            if self._postgres:
                with connection.transaction():
                    yield _Tx(connection.cursor(), True)
            else:
                # One writer at a time inside this process: SQLite's own busy handler sleeps and backs off,
                # which under load costs far more than waiting on a lock.
                with self._lock.hold(urgent) if write else contextlib.nullcontext():
                    connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    try:
                        yield _Tx(connection.cursor(), False)
                    except BaseException:
                        connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")
        except CustodyError:
            raise
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(f"already recorded: {exc}") from None
        except sqlite3.Error as exc:
            raise UnavailableError(f"custody database error: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                import psycopg

                self._local.connection = None
                if isinstance(exc, psycopg.errors.UniqueViolation):
                    raise DuplicateError(f"already recorded: {exc}") from None
                raise UnavailableError(f"custody database error: {exc}") from None
            raise

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class _Tx:
    """A cursor that accepts ``?`` placeholders on both backends."""

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


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
