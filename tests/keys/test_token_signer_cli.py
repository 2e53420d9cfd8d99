"""``strongroom keys gen-token-signer`` and ``--key pkcs11:...`` on the command line, as subprocesses on the
session's SoftHSM2 token: keys are made in the token, and every way a token key fails to open is one
``error:`` line and exit status 1, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from strongroom.signing import Verifier
from tests.cli.test_seal_cli import run
from tests.keys.conftest import HSM_PIN, Hsm
from tests.keys.test_token_signer import label

NOWHERE = "http://127.0.0.1:9"  # nothing listens: a command that got past loading its key would fail to connect


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and HSM_PIN not in result.stderr
    return lines[0]


@pytest.fixture
def pin(monkeypatch: pytest.MonkeyPatch, hsm: Hsm) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.main.conf))
    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", HSM_PIN)


@pytest.mark.usefixtures("pin")
def test_gen_token_signer_writes_the_public_key_for_enrolment(hsm: Hsm, tmp_path: Path) -> None:
    name = label("cli-ed")
    made = run("keys", "gen-token-signer", "--label", name, "--token", hsm.main.label, "--out", str(tmp_path / "p.pub"),
               "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["uri"] == f"pkcs11:token={hsm.main.label};object={name}" and summary["type"] == "ed25519"
    assert summary["attributes"]["EXTRACTABLE"] is False and summary["attributes"]["SENSITIVE"] is True
    assert Verifier.load(tmp_path / "p.pub").key_id == summary["key_id"]
    shown = run("keys", "show-signer", summary["uri"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["key_id"] == summary["key_id"]
    p256 = run("keys", "gen-token-signer", "--label", label("cli-p256"), "--type", "ecdsa-p256",
               "--token", hsm.main.label, "--out", str(tmp_path / "e.pub"), "--json")  # fmt: skip
    assert p256.returncode == 0 and Verifier.load(tmp_path / "e.pub").key_type == "ecdsa-p256"
    again = run("keys", "gen-token-signer", "--label", name, "--token", hsm.main.label, "--out", str(tmp_path / "x"))
    assert "already holds a key labelled" in one_error_line(again)
    rsa = run("keys", "gen-token-signer", "--label", label("rsa"), "--type", "rsa", "--token", hsm.main.label)
    assert "unknown key type 'rsa'" in one_error_line(rsa)


@pytest.mark.usefixtures("pin")
def test_token_key_failures_are_one_line_on_the_command_line(
    hsm: Hsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = label("cli-err")
    made = run("keys", "gen-token-signer", "--label", name, "--token", hsm.main.label, "--out", str(tmp_path / "k.pub"))
    assert made.returncode == 0, made.stderr
    uri = f"pkcs11:token={hsm.main.label};object={name}"

    def approvals(key: str) -> subprocess.CompletedProcess[str]:
        return run("approvals", "--person", "tina", "--key", key, "--server", NOWHERE)

    # The key opens: the command gets as far as the (absent) server.
    reached = approvals(uri)
    assert reached.returncode == 1 and "PKCS#11" not in reached.stderr and "Traceback" not in reached.stderr
    missing = f"pkcs11:token={hsm.main.label};object=nobody"
    assert one_error_line(approvals(missing)) == (
        f"error: PKCS#11 key {missing}: token '{hsm.main.label}' holds no such private key"
    )
    assert "no token labelled 'absent'" in one_error_line(approvals("pkcs11:token=absent;object=x"))
    assert "cannot be loaded" in one_error_line(approvals(uri + "?module-path=/lib/x86_64-linux-gnu/libc.so.6"))
    assert "pin-value is refused" in one_error_line(approvals(uri + "?pin-value=1234"))
    body = tmp_path / "body.json"
    body.write_text("{}")
    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", "wrong-pin")
    assert "the PIN was refused" in one_error_line(approvals(uri))
    appended = run("ledger", "append", NOWHERE, "--type", "model.evaluated", "--body", str(body), "--signer-key", uri)
    assert "the PIN was refused" in one_error_line(appended)
    monkeypatch.delenv("STRONGROOM_PKCS11_PIN")
    assert "no PIN" in one_error_line(approvals(uri))
    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", HSM_PIN)
    monkeypatch.setenv("STRONGROOM_PKCS11_MODULE", str(tmp_path / "missing.so"))
    assert f"PKCS#11 module {tmp_path / 'missing.so'} not found" in one_error_line(approvals(uri))
    host = run("request", "blake3:" + "00" * 32, "--person", "tina", "--key", str(tmp_path / "absent.pem"),
               "--host-id", "h", "--host-key", uri, "--purpose", "x", "--server", NOWHERE)  # fmt: skip
    assert "not found" in one_error_line(host)
