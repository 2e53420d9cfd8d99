"""The sign / verify / manifest commands as a user runs them: exit codes and the failing tensor named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import LAYER, copy_model, nudged_copy

SRC = str(Path(__file__).parents[2] / "src")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args], capture_output=True, text=True, env=env, check=False
    )


def test_gen_signer_sign_verify_and_failures(model_dir: Path, tmp_path: Path) -> None:
    assert cli("keys", "gen-signer", str(tmp_path / "alice")).returncode == 0
    assert cli("keys", "gen-signer", str(tmp_path / "bob"), "--type", "ed25519").returncode == 0
    model = copy_model(model_dir, tmp_path / "m")
    signed = cli("sign", str(model), "--signer-key", str(tmp_path / "alice.key"), "--json")
    assert signed.returncode == 0, signed.stderr
    model_id = json.loads(signed.stdout)["model_id"]
    ok = cli("verify", str(model), "--signer", str(tmp_path / "alice.pub"), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["model_id"] == model_id
    shown = cli("manifest", str(model), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["model_id"] == model_id
    wrong = cli("verify", str(model), "--signer", str(tmp_path / "bob.pub"))
    assert wrong.returncode == 1 and "unknown signer" in wrong.stderr
    tampered = nudged_copy(model, tmp_path / "t")
    bad = cli("verify", str(tampered), "--signer", str(tmp_path / "alice.pub"))
    assert bad.returncode == 1 and LAYER in bad.stderr and bad.stderr.startswith("error:")
    bad_json = cli("verify", str(tampered), "--signer", str(tmp_path / "alice.pub"), "--json")
    report = json.loads(bad_json.stdout)
    assert bad_json.returncode == 1 and report["ok"] is False
    assert report["failures"][0] == {
        "kind": "tensor-digest",
        "where": f"model.safetensors:{LAYER}",
        "message": f"tensor '{LAYER}' bytes differ from the signed ones",
    }
    unsigned = cli("verify", str(model_dir), "--signer", str(tmp_path / "alice.pub"))
    assert unsigned.returncode == 1 and "unsigned model" in unsigned.stderr
