"""Process hygiene for key-holding commands: no core dumps, not dumpable, no secrets in children's environment,
key pages locked where permitted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")

PROBE = """
import os, resource, subprocess, sys
from strongroom.cli import main
from strongroom import process
process.harden(); process.take_secrets()
libc = __import__("strongroom.memory", fromlist=["libc"]).libc()
print("core", resource.getrlimit(resource.RLIMIT_CORE))
print("dumpable", libc.prctl(3, 0, 0, 0, 0))
print("secret", process.secret("STRONGROOM_PASSPHRASE"))
child = subprocess.run(["env"], capture_output=True, text=True).stdout
print("child", "STRONGROOM_PASSPHRASE" in child, "STRONGROOM_PKCS11_PIN" in child, "STRONGROOM_KEYS" in child)
"""


def test_a_key_holding_process_dumps_nothing_and_children_inherit_no_secret() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "STRONGROOM_PASSPHRASE": "granite orchid lantern thimble",
        "STRONGROOM_PKCS11_PIN": "1234",
        "STRONGROOM_KEYS": "/some/dir",  # not a secret: stays
    }
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["core"] == "(0, 0)" and lines["dumpable"] == "0"
    assert lines["secret"] == "granite orchid lantern thimble"  # still readable inside the process
    assert lines["child"] == "False False True"


def test_the_cli_hardens_itself_before_any_command(tmp_path: Path) -> None:
    """A real command: `strongroom keys init` reads the passphrase; the process was hardened first."""
    script = (
        "import resource, sys\n"
        "from strongroom.cli import main as m\n"
        "sys.argv = ['strongroom', 'keys', 'init', sys.argv[1]]\n"
        "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
        "from strongroom.memory import libc\n"
        "import os\n"
        "core, dumpable = resource.getrlimit(resource.RLIMIT_CORE), libc().prctl(3, 0, 0, 0, 0)\n"
        "print(core, dumpable, 'STRONGROOM_PASSPHRASE' in os.environ)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": "granite orchid lantern thimble"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "k")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "(0, 0) 0 False"
    assert (tmp_path / "k" / "keyring.json").exists()


def test_key_pages_are_locked_where_permitted() -> None:
    from strongroom.memory import lock, unlock, wipe

    key = bytearray(os.urandom(32))
    assert lock(key)  # a 32-byte lock fits the default RLIMIT_MEMLOCK
    wipe(key)
    unlock(key)
    assert key == bytearray(32)
