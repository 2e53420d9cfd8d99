"""The people of a release using the command line against a real 'strongroom serve' process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from strongroom.server.background import serve_process
from tests.cli.test_seal_cli import CLI_PASSPHRASE, run
from tests.custody.conftest import SERVER_ENV

SRC = str(Path(__file__).parents[2] / "src")


def officers(tmp: Path, data: Path) -> list[str]:
    """Two officer keys; their public keys in DATA/officers make them the server's genesis authority.
    Returns ``--officer-key`` arguments for both."""
    data.mkdir(mode=0o700)
    (data / "officers").mkdir()
    args = []
    for name in ("olga", "oscar"):
        assert run("keys", "gen-signer", str(tmp / name), "--type", "ed25519").returncode == 0
        (data / "officers" / f"{name}.pub").write_bytes((tmp / f"{name}.pub").read_bytes())
        args += ["--officer-key", str(tmp / f"{name}.key")]
    return args


def enrol(tmp: Path, url: str, two: list[str], people: list[tuple[str, int]]) -> None:
    for name, tier in people:
        assert run("keys", "gen-signer", str(tmp / name), "--type", "ed25519").returncode == 0
        result = run(
            "people", "enrol", name, "--name", name.title(), "--public-key", str(tmp / f"{name}.pub"),
            "--position", f"tier {tier}", "--tier", str(tier), "--vetted-on", "2026-10-01", *two,
            "--server", url, *(["--custodian"] if tier == 5 else []),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def enrol_host(tmp: Path, url: str, two: list[str], host: str) -> None:
    assert run("hosts", "keygen", str(tmp / "host.key")).returncode == 0
    enrolled = run(
        "hosts", "enrol", host, "--public-key", str(tmp / "host.key.pub"), "--name", f"{host}.dc1",
        "--site", "dc1 rack 2", "--owner", "platform", *two, "--server", url, "--json",
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    shown = json.loads(
        run("hosts", "show", host, "--person", "officer", "--key", two[1], "--server", url, "--json").stdout
    )
    assert shown["name"] == f"{host}.dc1" and shown["fingerprint"].startswith("SHA256:")


def request_as_alice(tmp: Path, model_id: str, host_id: str, session: Path, url: str) -> str:
    """``strongroom request`` by alice through the enrolled host key in ``tmp``; returns the request id."""
    requested = run(
        "request", model_id, "--person", "alice", "--key", str(tmp / "alice.key"), "--host-id", host_id,
        "--host-key", str(tmp / "host.key"), "--purpose", "eval", "--session", str(session), "--server", url, "--json",
    )  # fmt: skip
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
    assert story["officers"] == ["olga", "oscar"] and story["witnesses"] == ["strongroom.demo/witness"]
    assert story["ledger_size"] >= 10 and story["model_id"].startswith("blake3:")
    assert story["audit"]["ok"] and [r["verified"] for r in story["audit"]["releases"]] == [True]
    assert story["embedding"]["equal_to_original"]
    # the weight host sits behind its gateway: the demo's request went through it and was metered
    served = story["egress"]["served"]
    assert served["status"] == 200 and 0 < served["gateway"]["used_bytes"] <= served["gateway"]["budget_bytes"]
    assert story["egress"]["budget"]["gateway_bytes"] == served["gateway"]["budget_bytes"]
    if shutil.which("swtpm"):  # gpu-node-01 on a software TPM: the release's verdict is on the ledger
        assert story["attestation"]["result"] == "trusted" and story["attestation"]["host_class"] == "inference"


def test_request_approve_load_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    keys, sealed, data = tmp_path / "keys", tmp_path / "sealed", tmp_path / "srv"
    assert run("keys", "init", str(keys)).returncode == 0
    sealed_out = run("seal", str(model_dir), str(sealed), "--keys", str(keys), "--json")
    model_id = json.loads(sealed_out.stdout)["model_id"]
    assert model_id == json.loads(run("manifest", str(model_dir), "--json").stdout)["model_id"]
    two = officers(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": CLI_PASSPHRASE, **SERVER_ENV}
    with serve_process(data, "--keys", str(keys), env=env) as url:
        enrol(tmp_path, url, two, [("alice", 3), ("bob", 4), ("carol", 5)])
        assert run("people", "show", "carol", "--server", url).returncode == 1  # reads are signed
        own = json.loads(
            run("people", "show", "carol", "--key", str(tmp_path / "carol.key"), "--server", url, "--json").stdout
        )
        assert own["custodian"] is True
        other = run("people", "show", "alice", "--as", "carol", "--key", str(tmp_path / "carol.key"), "--server", url)
        assert other.returncode == 1 and "may not read person alice" in other.stderr
        shown = run("people", "show", "carol", "--officer-key", two[1], "--details", "--server", url, "--json")
        details = {d["field"]: d["value"] for d in json.loads(shown.stdout)["details"]}
        assert details == {"name": "Carol", "position": "tier 5"}
        # One officer alone cannot register a model: they save the change, the other co-signs and submits.
        alone = run("register", str(sealed), *two[:2], "--required-tier", "3", "--server", url)
        assert alone.returncode == 1 and "needs 2 distinct officers, signed by 1" in alone.stderr
        proposal = tmp_path / "register.json"
        saved = run("register", str(sealed), *two[:2], "--required-tier", "3", "--out", str(proposal))
        assert saved.returncode == 0, saved.stderr
        assert run("admin", "cosign", str(proposal), *two[2:]).returncode == 0
        assert "model.register" in run("admin", "show", str(proposal)).stdout
        submitted = run("admin", "submit", str(proposal), "--server", url, "--json")
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["officers"] == ["olga", "oscar"]
        enrol_host(tmp_path, url, two, "gpu-07")
        request_id = request_as_alice(tmp_path, model_id, "gpu-07", tmp_path / "host.session", url)
        pending = json.loads(
            run("approvals", "--person", "bob", "--key", str(tmp_path / "bob.key"), "--server", url, "--json").stdout
        )["pending"]
        assert [p["request_id"] for p in pending] == [request_id] and pending[0]["host"]["name"] == "gpu-07.dc1"
        # the requester cannot decide: told the rule, not 'no such request'
        alice = ["--person", "alice", "--key", str(tmp_path / "alice.key"), "--server", url]
        own = run("approve", request_id, *alice)
        assert own.returncode == 1 and own.stderr.startswith(
            f"error: alice made request {request_id[:16]} and cannot approve or deny it: a requester never decides"
        )
        own_prefix = run("approve", request_id[:12], *alice)
        assert own_prefix.returncode == 1 and "pending requests that someone else made" in own_prefix.stderr
        early = run(
            "load", str(tmp_path / "host.session"), "--sealed", str(sealed), "--host-key", str(tmp_path / "host.key")
        )
        assert early.returncode == 1 and "0 of 2 required approvals" in early.stderr
        for approver in ("bob", "carol"):
            approved = run(
                "approve", request_id[:12], "--person", approver, "--key", str(tmp_path / f"{approver}.key"),
                "--server", url,
            )  # fmt: skip
            assert approved.returncode == 0, approved.stderr
        assert load_session(tmp_path / "host.session", sealed, tmp_path / "host.key")["tensors"] == 104
        narrow = subprocess.run(
            [sys.executable, "-m", "strongroom.cli.main", "ledger", "show", url],
            env={**env, "COLUMNS": "80"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert narrow.returncode == 0 and max(map(len, narrow.stdout.splitlines())) <= 80, narrow.stdout
        assert "\u2026" not in narrow.stdout and "key.released" in narrow.stdout, "folded, not cut"
        shown = json.loads(run("ledger", "show", url, "--type", "key.released", "--json").stdout)
        assert len(shown) == 1 and shown[0]["body"]["approvers"] == ["bob", "carol"]
        refused = run("ledger", "verify", url, "--state", str(tmp_path / "audit.json"), "--custody")
        assert refused.returncode == 1 and "Without a witness" in refused.stderr
        audit = run(
            "ledger", "verify", url, "--state", str(tmp_path / "audit.json"), "--custody", "--no-witness", "--json"
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        report = json.loads(audit.stdout)
        assert report["full_history"] is True and report["custody"]["ok"]
        assert [r["verified"] for r in report["custody"]["releases"]] == [True]
        retired = run("hosts", "retire", "gpu-07", *two[:2], "--server", url)
        assert retired.returncode == 0, retired.stderr
        again = run(
            "request", model_id, "--person", "alice", "--key", str(tmp_path / "alice.key"), "--host-id", "gpu-07",
            "--host-key", str(tmp_path / "host.key"), "--purpose", "eval", "--server", url,
        )  # fmt: skip
        assert again.returncode == 1 and "retired" in again.stderr


def test_custodian_quorum_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    """A key split 2-of-2 between custodians: the server holds no key; custodians approve with their shares."""
    for name in ("carol", "dave"):
        assert run("keys", "custodian-init", name, "--dir", str(tmp_path / "cust"), passphrase=None).returncode == 0
    config = tmp_path / "keys.toml"
    config.write_text(
        'provider = "shamir"\n\n[shamir]\nthreshold = 2\ncustodians = ["cust/carol.pub.pem", "cust/dave.pub.pem"]\n'
    )
    sealed, data = tmp_path / "sealed", tmp_path / "srv"
    sealed_out = run("seal", str(model_dir), str(sealed), "--key-config", str(config), "--json", passphrase=None)
    assert sealed_out.returncode == 0, sealed_out.stderr
    model_id = json.loads(sealed_out.stdout)["model_id"]
    two = officers(tmp_path, data)
    with serve_process(data, env={**os.environ, "PYTHONPATH": SRC, **SERVER_ENV}) as url:
        enrol(tmp_path, url, two, [("alice", 3), ("carol", 5), ("dave", 5)])
        registered = run("register", str(sealed), *two, "--required-tier", "3", "--server", url)
        assert registered.returncode == 0, registered.stderr
        enrol_host(tmp_path, url, two, "gpu-q")
        request_id = request_as_alice(tmp_path, model_id, "gpu-q", tmp_path / "q.session", url)
        for name in ("carol", "dave"):
            approved = run(
                "approve", request_id[:12], "--person", name, "--key", str(tmp_path / f"{name}.key"), "--server", url
            )  # fmt: skip
            assert approved.returncode == 0, approved.stderr
        session = str(tmp_path / "q.session")
        waiting = run("load", session, "--sealed", str(sealed), "--host-key", str(tmp_path / "host.key"))
        assert (
            waiting.returncode == 1 and "0 of 2 custodian shares delivered" in waiting.stderr
        )  # logged, not yet delivered
        vkey = (data / "log.vkey").read_text().strip()
        for name in ("carol", "dave"):
            delivered = run(
                "deliver", "--person", name, "--key", str(tmp_path / f"{name}.key"),
                "--custodian-key", str(tmp_path / "cust" / f"{name}.pem"), "--log-key", vkey,
                "--state", str(tmp_path / f"{name}-audit.json"), "--no-witness", "--server", url, "--json",
            )  # fmt: skip
            assert delivered.returncode == 0, delivered.stderr
            assert [d["request_id"] for d in json.loads(delivered.stdout)["delivered"]] == [request_id]
        assert load_session(tmp_path / "q.session", sealed, tmp_path / "host.key")["tensors"] == 104
