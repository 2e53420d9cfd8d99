"""The people of a release using the command line against a real 'strongroom serve' process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from strongroom.server.background import serve_process
from tests.cli.test_seal_cli import run

SRC = str(Path(__file__).parents[2] / "src")


def request_as_alice(keydir: Path, model_id: str, host_id: str, session: Path, url: str) -> str:
    """``strongroom request`` by alice through the host key in ``keydir``; returns the request id."""
    requested = run(
        "request",
        model_id,
        "--person",
        "alice",
        "--key",
        str(keydir / "alice.key"),
        "--host-id",
        host_id,
        "--host-key",
        str(keydir / "host.key"),
        "--purpose",
        "eval",
        "--session",
        str(session),
        "--server",
        url,
        "--json",
    )
    assert requested.returncode == 0, requested.stderr
    return str(json.loads(requested.stdout)["request_id"])


def load_session(session: Path, sealed: Path, host_key: Path) -> dict[str, object]:
    """``strongroom load --json`` for a host session; returns its summary."""
    loaded = run("load", str(session), "--sealed", str(sealed), "--host-key", str(host_key), "--json")
    assert loaded.returncode == 0, loaded.stderr
    return dict(json.loads(loaded.stdout))


def test_demo_main_job_json(tmp_path: Path) -> None:
    result = run("demo", "--workdir", str(tmp_path / "demo"), "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    story = json.loads(result.stdout)
    assert story["approvers"] == ["bob", "carol"] and len(story["release_ids"]) == 1
    assert story["ledger_size"] >= 10 and story["model_id"].startswith("blake3:")
    assert story["audit"][0]["verified"] and story["embedding"]["equal_to_original"]


def test_request_approve_load_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    keys, sealed, data = tmp_path / "keys", tmp_path / "sealed", tmp_path / "srv"
    assert run("keys", "init", str(keys)).returncode == 0
    assert run("seal", str(model_dir), str(sealed), "--keys", str(keys)).returncode == 0
    model_id = json.loads(run("manifest", str(model_dir), "--json").stdout)["model_id"]
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": "cli-pass"}
    with serve_process(data, "--keys", str(keys), env=env) as url:
        officer = str(data / "operator.key")
        for name, tier, custodian in [("alice", 3, False), ("bob", 4, False), ("carol", 5, True)]:
            assert run("keys", "gen-signer", str(tmp_path / name), "--type", "ed25519").returncode == 0
            enrol = [
                "people",
                "enrol",
                name,
                "--name",
                name.title(),
                "--public-key",
                str(tmp_path / f"{name}.pub"),
                "--position",
                f"tier {tier}",
                "--tier",
                str(tier),
                "--vetted-on",
                "2026-10-01",
                "--officer-key",
                officer,
                "--server",
                url,
            ]
            result = run(*enrol, *(["--custodian"] if custodian else []))
            assert result.returncode == 0, result.stderr
        assert json.loads(run("people", "show", "carol", "--server", url, "--json").stdout)["custodian"] is True
        registered = run(
            "register",
            str(sealed),
            "--model-id",
            model_id,
            "--officer-key",
            officer,
            "--required-tier",
            "3",
            "--server",
            url,
            "--json",
        )
        assert registered.returncode == 0, registered.stderr
        assert run("keys", "gen-signer", str(tmp_path / "host"), "--type", "ed25519").returncode == 0
        request_id = request_as_alice(tmp_path, model_id, "gpu-07", tmp_path / "host.session", url)
        pending = json.loads(
            run("approvals", "--person", "bob", "--key", str(tmp_path / "bob.key"), "--server", url, "--json").stdout
        )["pending"]
        assert [p["request_id"] for p in pending] == [request_id]
        early = run(
            "load", str(tmp_path / "host.session"), "--sealed", str(sealed), "--host-key", str(tmp_path / "host.key")
        )
        assert early.returncode == 1 and "0 of 2 required approvals" in early.stderr
        for approver in ("bob", "carol"):
            approved = run(
                "approve",
                request_id[:12],
                "--person",
                approver,
                "--key",
                str(tmp_path / f"{approver}.key"),
                "--server",
                url,
            )
            assert approved.returncode == 0, approved.stderr
        assert load_session(tmp_path / "host.session", sealed, tmp_path / "host.key")["tensors"] == 104
        shown = json.loads(run("ledger", "show", url, "--type", "key.released", "--json").stdout)
        assert len(shown) == 1 and shown[0]["body"]["approvers"] == ["bob", "carol"]
        audit = run("ledger", "verify", url, "--state", str(tmp_path / "audit.json"), "--full", "--json")
        assert audit.returncode == 0 and json.loads(audit.stdout)["full_history"] is True


def test_custodian_quorum_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    """A key split 2-of-2 between custodians: the server holds no key; custodians approve with their shares."""
    for name in ("carol", "dave"):
        assert run("keys", "custodian-init", name, "--dir", str(tmp_path / "cust"), passphrase=None).returncode == 0
    config = tmp_path / "keys.toml"
    config.write_text(
        'provider = "shamir"\n\n[shamir]\nthreshold = 2\ncustodians = ["cust/carol.pub.pem", "cust/dave.pub.pem"]\n'
    )
    sealed, data = tmp_path / "sealed", tmp_path / "srv"
    assert run("seal", str(model_dir), str(sealed), "--key-config", str(config), passphrase=None).returncode == 0
    model_id = json.loads(run("manifest", str(model_dir), "--json").stdout)["model_id"]
    with serve_process(data, env={**os.environ, "PYTHONPATH": SRC}) as url:
        officer = str(data / "operator.key")
        for name, tier in [("alice", 3), ("carol", 5), ("dave", 5)]:
            assert run("keys", "gen-signer", str(tmp_path / name), "--type", "ed25519").returncode == 0
            enrolled = run(
                "people",
                "enrol",
                name,
                "--name",
                name,
                "--public-key",
                str(tmp_path / f"{name}.pub"),
                "--position",
                "p",
                "--tier",
                str(tier),
                "--vetted-on",
                "2026-10-01",
                "--officer-key",
                officer,
                "--server",
                url,
                *(["--custodian"] if tier == 5 else []),
            )
            assert enrolled.returncode == 0, enrolled.stderr
        assert (
            run(
                "register",
                str(sealed),
                "--model-id",
                model_id,
                "--officer-key",
                officer,
                "--required-tier",
                "3",
                "--server",
                url,
            ).returncode
            == 0
        )
        assert run("keys", "gen-signer", str(tmp_path / "host"), "--type", "ed25519").returncode == 0
        request_id = request_as_alice(tmp_path, model_id, "gpu-q", tmp_path / "q.session", url)
        for name in ("carol", "dave"):
            approved = run(
                "approve",
                request_id[:12],
                "--person",
                name,
                "--key",
                str(tmp_path / f"{name}.key"),
                "--custodian-key",
                str(tmp_path / "cust" / f"{name}.pem"),
                "--server",
                url,
            )
            assert approved.returncode == 0, approved.stderr
        assert load_session(tmp_path / "q.session", sealed, tmp_path / "host.key")["tensors"] == 104
