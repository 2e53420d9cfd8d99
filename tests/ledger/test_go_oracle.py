"""Go's golang.org/x/mod/sumdb/note and tlog (Debian's golang-golang-x-mod-dev, built offline) check
Strongroom's checkpoints, inclusion proofs and consistency proofs: an implementation nobody here wrote."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from strongroom.ledger.log import Ledger
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated

ORACLE = Path(__file__).parent / "oracle" / "oracle.go"
GOPATH = "/usr/share/gocode"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the oracle in GOPATH mode from Debian's packages; fails (not skips) if Go is missing."""
    go = shutil.which("go")
    assert go, "Go is not installed (bash .ci/run installs golang-go and golang-golang-x-mod-dev)"
    assert Path(GOPATH, "src/golang.org/x/mod/sumdb/tlog").is_dir(), "golang-golang-x-mod-dev is not installed"
    out = tmp_path_factory.mktemp("go") / "oracle"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(out.parent / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    subprocess.run([go, "build", "-o", str(out), str(ORACLE)], env=env, check=True, capture_output=True, timeout=300)
    return out


def ask(oracle: Path, request: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(oracle)], input=json.dumps(request), capture_output=True, text=True, timeout=60)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_go_checks_checkpoints_and_proofs(oracle: Path, tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "log", origin="strongroom.test/log")
    signer = Signer.generate("ed25519")
    for i in range(5):
        ledger.append(evaluated(signer, i))
    old_size, old_root = ledger.size, ledger.root(ledger.size)
    for i in range(5, 300):
        ledger.append(evaluated(signer, i))
    note, size = ledger.checkpoint(), ledger.size
    vkey = ledger.signer.verifier.vkey
    for index in [0, 1, 4, 127, 255, 256, 299]:
        request = {
            "vkey": vkey,
            "note": note,
            "index": index,
            "entry": b64(ledger.entry(index)),
            "proof": [b64(h) for h in ledger.inclusion_proof(index, size)],
            "old_size": old_size,
            "old_root": b64(old_root),
            "consistency": [b64(h) for h in ledger.consistency_proof(old_size, size)],
        }
        result = ask(oracle, request)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"ok strongroom.test/log {size}"
    # The oracle really checks: a wrong entry, a forged note and a bad consistency proof all fail.
    bad_entry = ask(oracle, {**request, "entry": b64(ledger.entry(3))})
    assert bad_entry.returncode == 1 and "inclusion" in bad_entry.stderr
    forged = ask(oracle, {**request, "note": note.replace(f"\n{size}\n", f"\n{size + 1}\n")})
    assert forged.returncode == 1 and "note" in forged.stderr
    wrong_old = ask(oracle, {**request, "old_root": b64(ledger.root(4))})
    assert wrong_old.returncode == 1 and "consistency" in wrong_old.stderr
    ledger.close()
