"""Durable storage of sequenced entries: SQLite (embedded default, WAL, synchronous=FULL) or PostgreSQL.

Both backends implement the same small interface and pass the same tests. A batch is committed in one
transaction; ``append_batch`` returns only once the commit is durable, and the sequencer acknowledges
appends only after that. Indices are a primary key, so a lost race can never sequence an index twice.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from strongroom.ledger.entries import Entry
from strongroom.ledger.errors import StorageError
from strongroom.sqlite_wal import Checkpointer, connect_wal


class LedgerStore(Protocol):
    def leaf_hashes(self) -> list[bytes]: ...
    def append_batch(self, start: int, entries: Sequence[Entry], leaves: Sequence[bytes]) -> None: ...
    def entries(self, start: int, end: int) -> list[bytes]: ...
    def query(self, filters: dict[str, str], limit: int, start: int = 0) -> list[tuple[int, bytes]]: ...
    def page(self, start: int, end: int, types: Sequence[str], limit: int) -> list[tuple[int, bytes]]: ...
    def save_checkpoint(self, size: int, note: str) -> None: ...
    def latest_checkpoint(self) -> tuple[int, str] | None: ...
    def close(self) -> None: ...


FILTER_COLUMNS = {
    "type": "type = ?",
    "model_id": "model_id = ?",
    "person": "person = ?",
    "signer": "signer = ?",
    "since": "time >= ?",
    "until": "time <= ?",
}


def open_store(database: str | Path) -> LedgerStore:
    """A PostgreSQL URL (``postgresql://...``) or a SQLite file path."""
    text = str(database)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    return SqliteStore(Path(text))


class _SqlStore(ABC):
    """The queries both backends share; each backend supplies ``_run`` (with ``?`` placeholders)."""

    where: str

    @abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute one statement and return its rows."""

    def leaf_hashes(self) -> list[bytes]:
        rows = self._run("SELECT idx, leaf FROM entries ORDER BY idx")
        for expected, (idx, _) in enumerate(rows):
            if idx != expected:
                raise StorageError(f"{self.where}: entry {expected} is missing (found {idx})")
        return [bytes(r[1]) for r in rows]

    def entries(self, start: int, end: int) -> list[bytes]:
        rows = self._run("SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end))
        return [bytes(r[0]) for r in rows]

    def query(self, filters: dict[str, str], limit: int, start: int = 0) -> list[tuple[int, bytes]]:
        """Up to ``limit`` entries matching every filter, from index ``start`` on, in index order."""
        where = ["idx >= ?", *(FILTER_COLUMNS[k] for k in filters)]
        sql = "SELECT idx, data FROM entries WHERE " + " AND ".join(where)
        rows = self._run(sql + " ORDER BY idx LIMIT ?", [start, *filters.values(), limit])
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def page(self, start: int, end: int, types: Sequence[str], limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` entries with start <= index < end (of ``types``, if any), in index order."""
        sql = "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ?"
        if types:
            sql += " AND type IN (" + ", ".join("?" * len(types)) + ")"
        rows = self._run(sql + " ORDER BY idx LIMIT ?", [start, end, *types, limit])
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        rows = self._run("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None


class SqliteStore(_SqlStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        try:
            self._db = connect_wal(path)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL, leaf BLOB NOT NULL,"
                " type TEXT NOT NULL, model_id TEXT, person TEXT, signer TEXT NOT NULL, time TEXT NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_model ON entries (model_id)")
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_type ON entries (type)")
            self._db.execute("CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)")
            self._checkpointer = Checkpointer(path)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open ledger database: {exc}") from None

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return list(self._db.execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from None

    def append_batch(self, start: int, entries: Sequence[Entry], leaves: Sequence[bytes]) -> None:
        rows = [
            (start + i, e.raw, leaves[i], e.type, e.model_id, e.person, e.signer, e.time) for i, e in enumerate(entries)
        ]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: append failed: {exc}") from None

    def save_checkpoint(self, size: int, note: str) -> None:
        self._run("INSERT OR IGNORE INTO checkpoints VALUES (?, ?)", (size, note))

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()


class PostgresStore(_SqlStore):
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.where = "PostgreSQL ledger"
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=5)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL, leaf BYTEA NOT NULL,"
                " type TEXT NOT NULL, model_id TEXT, person TEXT, signer TEXT NOT NULL, time TEXT NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_model ON entries (model_id)")
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_type ON entries (type)")
            self._db.execute("CREATE TABLE IF NOT EXISTS checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL)")
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL ledger database unavailable: {exc}") from None

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            with self._lock:
                cursor = self._db.execute(sql.replace("?", "%s"), tuple(params))
                return list(cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}") from None

    def append_batch(self, start: int, entries: Sequence[Entry], leaves: Sequence[bytes]) -> None:
        import psycopg

        rows = [
            (start + i, e.raw, leaves[i], e.type, e.model_id, e.person, e.signer, e.time) for i, e in enumerate(entries)
        ]
        try:
            with self._lock, self._db.transaction(), self._db.cursor() as cursor:
                cursor.executemany("INSERT INTO entries VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: append failed: {exc}") from None

    def save_checkpoint(self, size: int, note: str) -> None:
        self._run("INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT DO NOTHING", (size, note))

    def close(self) -> None:
        with self._lock:
            self._db.close()
