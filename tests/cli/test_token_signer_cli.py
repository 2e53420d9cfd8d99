"""A release by command line against a real 'strongroom serve', with signing keys inside a SoftHSM2 token:
an officer (ECDSA P-256), the requester and a custodian approver (Ed25519), and the serving host (Ed25519).

Only subprocesses load the PKCS#11 module here (SoftHSM2 reads its configuration once per process), so this
module's token directory never meets the one tests/keys loads in process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from strongroom.keys.devservers import init_softhsm
from strongroom.server.background import serve_process
from strongroom.signing import Verifier
from tests.cli.test_custody_cli import SRC
from tests.cli.test_seal_cli import CLI_PASSPHRASE, run
from tests.custody.conftest import SERVER_ENV

PIN = "cli-token-pin"


def test_release_with_token_keys_by_command_line(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (token,) = init_softhsm(tmp_path / "hsm", ["people"], PIN)
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    monkeypatch.setenv("STRONGROOM_PKCS11_TOKEN_LABEL", "people")
    monkeypatch.delenv("STRONGROOM_PKCS11_PIN", raising=False)
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)

    def uri(name: str) -> str:
        # The PIN from a pin-source file named in the URI; the token from STRONGROOM_PKCS11_TOKEN_LABEL.
        return f"pkcs11:object={name}?pin-source=file:{pin_file}"

    def gen(name: str, key_type: str = "ed25519") -> Path:
        out = tmp_path / f"{name}.pub"
        made = run("keys", "gen-token-signer", "--label", name, "--type", key_type, "--out", str(out), "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["key_id"] == Verifier.load(out).key_id
        return out

    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", PIN)  # gen-token-signer reads the PIN from settings
    public = {name: gen(name) for name in ("alice", "carol", "gpu-host")}
    public["olga"] = gen("olga", "ecdsa-p256")
    monkeypatch.delenv("STRONGROOM_PKCS11_PIN")

    keys, sealed, data = tmp_path / "keys", tmp_path / "sealed", tmp_path / "srv"
    assert run("keys", "init", str(keys)).returncode == 0
    sealed_out = run("seal", str(model_dir), str(sealed), "--keys", str(keys), "--json")
    assert sealed_out.returncode == 0, sealed_out.stderr
    model_id = json.loads(sealed_out.stdout)["model_id"]
    # Officers: olga in the token, oscar in a file; both public keys are the genesis authority.
    assert run("keys", "gen-signer", str(tmp_path / "oscar"), "--type", "ed25519").returncode == 0
    data.mkdir(mode=0o700)
    (data / "officers").mkdir()
    (data / "officers" / "olga.pub").write_bytes(public["olga"].read_bytes())
    (data / "officers" / "oscar.pub").write_bytes((tmp_path / "oscar.pub").read_bytes())
    two = ["--officer-key", uri("olga"), "--officer-key", str(tmp_path / "oscar.key")]
    assert run("keys", "gen-signer", str(tmp_path / "bob"), "--type", "ed25519").returncode == 0
    public["bob"] = tmp_path / "bob.pub"

    with serve_process(
        data,
        "--keys",
        str(keys),
        env={**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": CLI_PASSPHRASE, **SERVER_ENV},
    ) as url:
        for name, tier in (("alice", 3), ("bob", 4), ("carol", 5)):
            enrolled = run(
                "people", "enrol", name, "--name", name.title(), "--public-key", str(public[name]),
                "--position", f"tier {tier}", "--tier", str(tier), "--vetted-on", "2026-10-01", *two,
                "--server", url, "--json", *(["--custodian"] if tier == 5 else []),
            )  # fmt: skip
            assert enrolled.returncode == 0, enrolled.stderr
            assert json.loads(enrolled.stdout)["officers"] == ["olga", "oscar"]
        registered = run("register", str(sealed), *two, "--required-tier", "3", "--server", url)
        assert registered.returncode == 0, registered.stderr
        # olga signs a host enrolment in the token and saves it; oscar co-signs from his file and submits.
        proposal = tmp_path / "host.json"
        saved = run(
            "hosts", "enrol", "gpu-07", "--public-key", str(public["gpu-host"]), "--name", "gpu-07.dc1",
            "--site", "dc1", "--owner", "platform", "--officer-key", uri("olga"), "--out", str(proposal),
        )  # fmt: skip
        assert saved.returncode == 0, saved.stderr
        assert run("admin", "cosign", str(proposal), "--officer-key", str(tmp_path / "oscar.key")).returncode == 0
        submitted = run("admin", "submit", str(proposal), "--server", url, "--json")
        assert submitted.returncode == 0, submitted.stderr
        requested = run(
            "request", model_id, "--person", "alice", "--key", uri("alice"), "--host-id", "gpu-07",
            "--host-key", uri("gpu-host"), "--purpose", "eval", "--session", str(tmp_path / "h.session"),
            "--server", url, "--json",
        )  # fmt: skip
        assert requested.returncode == 0, requested.stderr
        request_id = json.loads(requested.stdout)["request_id"]
        pending = run("approvals", "--person", "carol", "--key", uri("carol"), "--server", url, "--json")
        assert [p["request_id"] for p in json.loads(pending.stdout)["pending"]] == [request_id]
        for name, key in (("carol", uri("carol")), ("bob", str(tmp_path / "bob.key"))):
            approved = run("approve", request_id[:12], "--person", name, "--key", key, "--server", url)
            assert approved.returncode == 0, approved.stderr
        loaded = run(
            "load", str(tmp_path / "h.session"), "--sealed", str(sealed), "--host-key", uri("gpu-host"), "--json"
        )
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout)["tensors"] == 104
        audit = run(
            "ledger", "verify", url, "--state", str(tmp_path / "audit.json"), "--custody", "--no-witness", "--json"
        )
        assert audit.returncode == 0, audit.stderr
        report = json.loads(audit.stdout)["custody"]
        assert report["ok"] and [r["verified"] for r in report["releases"]] == [True]
        # Another token key cannot load this host's session.
        stolen = run("load", str(tmp_path / "h.session"), "--sealed", str(sealed), "--host-key", uri("alice"))
        assert stolen.returncode == 1 and "does not open with this host key" in stolen.stderr
