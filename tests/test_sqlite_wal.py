"""Commits never checkpoint; the background checkpointer moves committed pages into the database file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from strongroom.sqlite_wal import Checkpointer, connect_wal


def fill(path: Path, rows: int) -> sqlite3.Connection:
    """Commit ``rows`` 4 KiB rows one by one; the connection is returned open (closing the last one checkpoints)."""
    connection = connect_wal(path)
    connection.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
    for _ in range(rows):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (zeroblob(4096))")
        connection.execute("COMMIT")
    return connection


def test_commits_leave_the_checkpoint_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    writer = fill(path, 1500)  # past SQLite's default autocheckpoint of 1000 pages
    wal = Path(str(path) + "-wal")
    assert wal.stat().st_size > 1500 * 4096
    assert path.stat().st_size < 100 * 4096  # nothing was copied into the database file by a commit
    checkpointer = Checkpointer(path, interval=0.02)
    deadline = time.monotonic() + 10
    while path.stat().st_size < 1500 * 4096:
        assert time.monotonic() < deadline, "the checkpointer never copied the pages"
        time.sleep(0.02)
    assert checkpointer.last_error is None
    checkpointer.close()
    writer.close()
