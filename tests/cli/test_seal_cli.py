"""The seal, inspect, ls and unseal commands as a user runs them: real subprocesses, exit codes, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI_PASSPHRASE = "cli passphrase saffron kettle"
SRC = str(Path(__file__).parents[2] / "src")


def run(
    *args: str, passphrase: str | None = CLI_PASSPHRASE, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_PASSPHRASE"}
    env["PYTHONPATH"] = SRC
    if passphrase is not None:
        env["STRONGROOM_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("cli") / "keys"
    result = run("keys", "init", str(keys), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["protection"] == "scrypt"
    return keys


@pytest.fixture(scope="module")
def cli_seal_summary(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, cli_keys: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cli-sealed") / "minilm"
    result = run("seal", str(model_dir), str(out), "--keys", str(cli_keys), "--json")
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["plaintext_bytes"] > 90_000_000
    assert {f["name"] for f in summary["files"]} >= {"model.safetensors", "config.json", "tokenizer.json"}
    return summary


@pytest.fixture(scope="module")
def cli_sealed(cli_seal_summary: dict[str, Any]) -> Path:
    return Path(cli_seal_summary["sealed"])


def test_seal_binds_the_key_to_the_plain_model_id(cli_seal_summary: dict[str, Any], model_dir: Path) -> None:
    """`strongroom seal` of a directory prints the model id `strongroom manifest` gives the plain directory,
    and the data key is bound to it (and to the seal id)."""
    manifest = run("manifest", str(model_dir), "--json", passphrase=None)
    assert manifest.returncode == 0, manifest.stderr
    model_id = json.loads(manifest.stdout)["model_id"]
    assert cli_seal_summary["model_id"] == model_id
    binding = {"seal_id": cli_seal_summary["seal_id"], "model_id": model_id}
    assert cli_seal_summary["key"]["binding"] == binding
    shown = run("inspect", cli_seal_summary["sealed"], "--json", passphrase=None)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["model_id"] == model_id
    assert json.loads(shown.stdout)["key"]["binding"] == binding
    table = run("inspect", cli_seal_summary["sealed"], passphrase=None).stdout
    assert f"model id {model_id}" in " ".join(table.split())  # rich wraps long lines


def test_seal_table_prints_the_model_id(tmp_path: Path, cli_keys: Path) -> None:
    src = tmp_path / "tiny"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "tiny"}')
    (src / "notes.txt").write_text("weights elsewhere")
    manifest = run("manifest", str(src), "--json", passphrase=None)
    assert manifest.returncode == 0, manifest.stderr
    sealed = run("seal", str(src), str(tmp_path / "out"), "--keys", str(cli_keys))
    assert sealed.returncode == 0, sealed.stderr
    assert f"model id {json.loads(manifest.stdout)['model_id']}" in " ".join(sealed.stdout.split())


def test_inspect_needs_no_key(cli_sealed: Path) -> None:
    result = run("inspect", str(cli_sealed), "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["key"]["provider"] == "local"
    names = {f["name"]: f for f in data["files"]}
    assert names["model.safetensors"]["content_type"] == "safetensors"
    table = run("inspect", str(cli_sealed), passphrase=None)
    assert "model.safetensors" in table.stdout


def test_ls_lists_tensors(cli_sealed: Path, cli_keys: Path) -> None:
    result = run("ls", str(cli_sealed), "--keys", str(cli_keys), "--json")
    assert result.returncode == 0, result.stderr
    tensors = {t["name"]: t for t in json.loads(result.stdout)["files"]["model.safetensors"]}
    assert tensors["embeddings.word_embeddings.weight"] == {
        "name": "embeddings.word_embeddings.weight",
        "dtype": "F32",
        "shape": [30522, 384],
        "bytes": 30522 * 384 * 4,
    }


def test_ls_with_wrong_passphrase_is_one_line(cli_sealed: Path, cli_keys: Path) -> None:
    result = run("ls", str(cli_sealed), "--keys", str(cli_keys), passphrase="wrong")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {cli_keys}: wrong passphrase for this keyring"]


def test_no_passphrase_and_no_terminal(cli_sealed: Path, cli_keys: Path) -> None:
    result = run("ls", str(cli_sealed), "--keys", str(cli_keys), passphrase=None)
    assert result.returncode == 1
    assert "set STRONGROOM_PASSPHRASE" in result.stderr


def test_unseal_demands_the_loud_flag(cli_sealed: Path, cli_keys: Path, tmp_path: Path, model_dir: Path) -> None:
    refused = run("unseal", str(cli_sealed), str(tmp_path / "plain"), "--keys", str(cli_keys))
    assert refused.returncode == 1 and "--plaintext-to-disk" in refused.stderr
    assert not (tmp_path / "plain").exists()
    done = run("unseal", str(cli_sealed), str(tmp_path / "plain"), "--keys", str(cli_keys), "--plaintext-to-disk")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert (tmp_path / "plain" / "1_Pooling" / "config.json").exists()


def test_failed_seal_leaves_nothing(tmp_path: Path, cli_keys: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"garbage, not safetensors")
    result = run("seal", str(src), str(tmp_path / "out"), "--keys", str(cli_keys))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "model.safetensors" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_seal_refuses_existing_output_and_missing_input(tmp_path: Path, cli_keys: Path, cli_sealed: Path) -> None:
    exists = run("seal", str(tmp_path), str(cli_sealed), "--keys", str(cli_keys))
    assert exists.returncode == 1 and "already exists" in exists.stderr
    missing = run("seal", str(tmp_path / "nope"), str(tmp_path / "o"), "--keys", str(cli_keys))
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr


def test_single_file_seal_and_ls(tmp_path: Path, cli_keys: Path, model_dir: Path) -> None:
    out = tmp_path / "model.sealed"
    sealed = run("seal", str(model_dir / "model.safetensors"), str(out), "--keys", str(cli_keys), "--json")
    assert sealed.returncode == 0, sealed.stderr
    summary = json.loads(sealed.stdout)
    assert summary["model_id"] is None and summary["key"]["binding"] == {"seal_id": summary["seal_id"]}
    listing = run("ls", str(out), "--keys", str(cli_keys), "--json")
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)["files"]["model.safetensors"]) > 100


def test_kek_file_mode(tmp_path: Path, model_dir: Path) -> None:
    kek = tmp_path / "kek.bin"
    kek.write_bytes(os.urandom(32))
    assert run("keys", "init", str(tmp_path / "k"), "--kek-file", str(kek), passphrase=None).returncode == 0
    result = run(
        "seal",
        str(model_dir / "config.json"),
        str(tmp_path / "c.sealed"),
        "--keys",
        str(tmp_path / "k"),
        "--kek-file",
        str(kek),
        passphrase=None,
    )
    assert result.returncode == 0, result.stderr
