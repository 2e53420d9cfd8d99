"""Ledger fixtures: every storage test runs on embedded SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_POSTGRES = "postgresql://postgres:strongroom-test@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    """The server .ci/services/postgresql.sh starts; a test fails (never skips) if it is unreachable."""
    return os.environ.get("STRONGROOM_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    admin = postgres_admin_url()
    name = "strongroom_t_" + secrets.token_hex(6)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {admin} (bash .ci/run starts it): {exc}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend in turn."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    return str(request.getfixturevalue("postgres_url"))
