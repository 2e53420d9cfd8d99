"""A server's data directory is private: 0700, keys and databases (with their WAL files) 0600, keys encrypted
at rest; another local user cannot read a copy, and loose modes stop the server from starting."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.server.app import ServerSettingsError, open_services
from strongroom.server.background import serve_process
from tests.custody.conftest import SERVER_ENV

SRC = str(Path(__file__).parents[2] / "src")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_served_data_is_private_and_keys_are_encrypted(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    env = {**os.environ, "PYTHONPATH": SRC, **SERVER_ENV}
    with serve_process(data, env=env) as url:
        assert url
    assert mode(data) == 0o700
    secrets = [p for p in data.iterdir() if p.name.endswith((".key", ".sqlite3", "-wal", "-shm"))]
    assert {p.name for p in secrets} >= {"service.key", "log.key", "ledger.sqlite3", "custody.sqlite3"}
    assert all(mode(p) == 0o600 for p in secrets), {p.name: oct(mode(p)) for p in secrets}
    for key in ("service.key", "log.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (data / key).read_bytes()
    # Another local user cannot read a copy: not the directory, and not the database even where it is reachable.
    exposed = tmp_path / "exposed"
    exposed.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    shutil.copy2(data / "custody.sqlite3", exposed / "custody.sqlite3")
    for target in (data / "custody.sqlite3", exposed / "custody.sqlite3"):
        read = subprocess.run([*NOBODY, "cat", str(target)], capture_output=True, text=True)
        assert read.returncode != 0 and "Permission denied" in read.stderr
    tmp_path.chmod(0o700)


def test_encrypted_keys_need_their_passphrase(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    env = {**os.environ, "PYTHONPATH": SRC, **SERVER_ENV}
    with serve_process(data, env=env):
        pass
    for given, said in [(None, "set STRONGROOM_SERVER_PASSPHRASE"), ("wrong keys entirely here", "wrong passphrase")]:
        bad = {k: v for k, v in env.items() if k != "STRONGROOM_SERVER_PASSPHRASE"}
        if given is not None:
            bad["STRONGROOM_SERVER_PASSPHRASE"] = given
        out = subprocess.run(
            [sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(data), "--port", "1"],
            env=bad,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert out.returncode == 1 and said in out.stderr and "Traceback" not in out.stderr


def test_a_weak_first_passphrase_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_SERVER_PASSPHRASE": "server"}
    out = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(tmp_path / "srv"), "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "too short" in out.stderr
    assert not (tmp_path / "srv" / "log.key").exists()


@pytest.mark.parametrize("name", ["custody.sqlite3", "ledger.sqlite3", "service.key", "log.key", "."])
def test_loose_modes_stop_the_server_unless_allowed(tmp_path: Path, name: str) -> None:
    data = tmp_path / "srv"
    open_services(data).close()
    target = data / name
    target.chmod(0o755 if name == "." else 0o644)
    with pytest.raises(ServerSettingsError, match="not private: .*chmod"):
        open_services(data)
    open_services(data, allow_loose_permissions=True).close()
