"""``strongroom seal/ls/keys`` with --key-provider and --key-config, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.keys.devservers import OpenBaoDevServer, free_port

from .conftest import HSM_PIN, KEK_LABEL, Hsm

SRC = Path(__file__).resolve().parents[2] / "src"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(SRC)
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def _tensor_count(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return len(json.loads(result.stdout)["files"]["model.safetensors"])


def test_seal_and_ls_with_pkcs11(hsm: Hsm, model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "keys.toml"
    config.write_text(
        f'provider = "pkcs11"\n[pkcs11]\nmodule = "{hsm.main.module}"\ntoken_label = "{hsm.main.label}"\n'
        f'key_label = "{KEK_LABEL}"\ncreate_key = true\n'
    )
    env = {"SOFTHSM2_CONF": str(hsm.main.conf), "STRONGROOM_PKCS11_PIN": HSM_PIN}
    out = tmp_path / "sealed"
    result = run("seal", str(model_dir), str(out), "--key-config", str(config), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert HSM_PIN not in result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["key"]["provider"] == "pkcs11" and summary["key"]["key_id"] == f"{hsm.main.label}/{KEK_LABEL}"
    assert summary["key"]["binding"] == {"seal_id": summary["seal_id"], "model_id": summary["model_id"]}
    assert _tensor_count(run("ls", str(out), "--json", env={**env, "STRONGROOM_KEY_CONFIG": str(config)})) > 50
    check = run("keys", "check", "--key-config", str(config), "--json", env=env)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["unwrap"] == "ok"
    bad = run("ls", str(out), "--key-config", str(config), env={**env, "STRONGROOM_PKCS11_PIN": "9999"})
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "PIN was refused" in bad.stderr
    assert "9999" not in bad.stderr


def test_seal_with_openbao_and_fail_closed(bao: OpenBaoDevServer, model_dir: Path, tmp_path: Path) -> None:
    env = {"STRONGROOM_OPENBAO_ADDRESS": bao.address, "STRONGROOM_OPENBAO_TOKEN": bao.root_token}
    out = tmp_path / "sealed"
    result = run("seal", str(model_dir), str(out), "--key-provider", "openbao", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"]["provider"] == "openbao"
    assert _tensor_count(run("ls", str(out), "--key-provider", "openbao", "--json", env=env)) > 50
    dead = {**env, "STRONGROOM_OPENBAO_ADDRESS": f"http://127.0.0.1:{free_port()}"}
    failed = run("ls", str(out), "--key-provider", "openbao", env=dead)
    assert failed.returncode == 1 and "unreachable" in failed.stderr
    refused = run("ls", str(out), "--key-provider", "openbao", env={**env, "STRONGROOM_OPENBAO_TOKEN": "s.bogus"})
    assert refused.returncode == 1 and "refused the token" in refused.stderr
    assert not (tmp_path / "never").exists()
    nothing = run("seal", str(model_dir), str(tmp_path / "never"), "--key-provider", "openbao", env=dead)
    assert nothing.returncode == 1 and not (tmp_path / "never").exists()


def test_seal_with_shamir_custodians(model_dir: Path, tmp_path: Path) -> None:
    people = tmp_path / "custodians"
    for name in ("alice", "bob", "carol"):
        made = run("keys", "custodian-init", name, "--dir", str(people), "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["fingerprint"].startswith("x25519:")
    config = tmp_path / "shamir.toml"
    config.write_text(
        f'provider = "shamir"\n[shamir]\nthreshold = 2\ncustodians = ["{people}/alice.pub.pem", '
        f'"{people}/bob.pub.pem", "{people}/carol.pub.pem"]\n'
    )
    out = tmp_path / "sealed"
    sealed = run("seal", str(model_dir), str(out), "--key-config", str(config), "--json")
    assert sealed.returncode == 0, sealed.stderr
    assert json.loads(sealed.stdout)["key"]["provider"] == "shamir"
    alone = run("ls", str(out), "--key-config", str(config))
    assert alone.returncode == 1 and "custodian quorum" in alone.stderr
    quorum = {"STRONGROOM_SHAMIR_CUSTODIAN_PRIVATE_KEYS": f"{people}/bob.pem{os.pathsep}{people}/carol.pem"}
    assert _tensor_count(run("ls", str(out), "--key-config", str(config), "--json", env=quorum)) > 50


def test_local_keys_option_still_works(model_dir: Path, tmp_path: Path) -> None:
    kek = tmp_path / "kek.hex"
    kek.write_text("ab" * 32)
    keys = tmp_path / "keys"
    assert run("keys", "init", str(keys), "--kek-file", str(kek)).returncode == 0
    out = tmp_path / "sealed"
    result = run("seal", str(model_dir), str(out), "--keys", str(keys), "--kek-file", str(kek), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"]["provider"] == "local"
    listed = run("ls", str(out), "--keys", str(keys), "--kek-file", str(kek), "--json")
    assert _tensor_count(listed) > 50
    # --keys with a conflicting explicit provider is a clear error.
    clash = run("ls", str(out), "--keys", str(keys), "--key-provider", "openbao")
    assert clash.returncode == 1 and "--keys and --kek-file are for the local provider" in clash.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key-provider", "vault"], "vault"),
        (["--key-config", "/nonexistent/keys.toml"], "/nonexistent/keys.toml: cannot read"),
        (["--key-provider", "openbao"], "its [openbao] settings are missing"),
    ],
)
def test_bad_provider_options(model_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("seal", str(model_dir), str(tmp_path / "out"), *args)
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert message in result.stderr
