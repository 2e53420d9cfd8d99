"""Attested hosts by command line against a real 'strongroom serve' and a real swtpm: policy tpm-ca and golden,
host attest and enrol (credential activation through --tcti), host show, an attested load, and refusals as one
error line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.swtpm import SoftwareTpm
from strongroom.server.background import serve_process
from tests.cli.test_custody_cli import SRC, enrol, officers, request_as_alice
from tests.cli.test_seal_cli import CLI_PASSPHRASE, run
from tests.custody.conftest import SERVER_ENV

pytestmark = pytest.mark.timeout(600)


def test_attested_host_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    keys, sealed, data = tmp_path / "keys", tmp_path / "sealed", tmp_path / "srv"
    assert run("keys", "init", str(keys)).returncode == 0
    model_id = json.loads(run("seal", str(model_dir), str(sealed), "--keys", str(keys), "--json").stdout)["model_id"]
    two = officers(tmp_path, data)
    ca = TestManufacturerCa.create(tmp_path / "ca")
    untrusted = TestManufacturerCa.create(tmp_path / "untrusted", "Untrusted")
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": CLI_PASSPHRASE, **SERVER_ENV}
    with (
        SoftwareTpm(ca) as tpm,
        SoftwareTpm(untrusted) as rogue,
        serve_process(data, "--keys", str(keys), env=env) as url,
    ):
        enrol(tmp_path, url, two, [("alice", 3), ("bob", 4), ("carol", 5)])
        assert run("register", str(sealed), *two, "--required-tier", "3", "--server", url).returncode == 0
        policy = run("admin", "policy", model_id, "--required-tier", "3", "--attestation", *two, "--server", url)
        assert policy.returncode == 0, policy.stderr
        assert run("policy", "tpm-ca", str(ca.cert_path), *two, "--server", url).returncode == 0
        alone = run("policy", "golden", "inference", "--this-build", *two[:2], "--server", url)
        assert alone.returncode == 1 and "needs 2 distinct officers" in alone.stderr
        golden = run("policy", "golden", "inference", "--this-build", *two, "--server", url, "--json")
        assert golden.returncode == 0, golden.stderr

        assert run("host", "keygen", str(tmp_path / "host.key")).returncode == 0
        evidence = tmp_path / "evidence.json"
        attested = run(
            "host", "attest", "--identity", str(tmp_path / "host.key.pub"), "--out", str(evidence),
            "--tcti", tpm.tcti, "--measure", "--json",
        )  # fmt: skip
        assert attested.returncode == 0, attested.stderr
        enrolment = [
            "host", "enrol", "gpu-node-01", "--public-key", str(tmp_path / "host.key.pub"), "--name", "n1",
            "--site", "dc1", "--owner", "platform", "--evidence", str(evidence), "--host-class", "inference",
            "--manufacturer-ca", str(ca.cert_path), *two, "--server", url,
        ]  # fmt: skip
        # activation against another TPM (one that does not hold this EK) fails before anyone signs
        foreign = run(*enrolment, "--tcti", rogue.tcti)
        assert (
            foreign.returncode == 1
            and foreign.stderr.startswith("error:")
            and "TPM enrolment refused" in (foreign.stderr.replace("\n", " "))
        )
        assert "Traceback" not in foreign.stderr
        enrolled = run(*enrolment, "--tcti", tpm.tcti)
        assert enrolled.returncode == 0, enrolled.stderr
        shown = json.loads(
            run("host", "show", "gpu-node-01", "--person", "officer", "--key", two[1], "--server", url, "--json").stdout
        )
        assert shown["tpm"]["host_class"] == "inference"

        request_id = request_as_alice(tmp_path, model_id, "gpu-node-01", tmp_path / "host.session", url)
        for approver in ("bob", "carol"):
            approved = run(
                "approve", request_id[:12], "--person", approver, "--key", str(tmp_path / f"{approver}.key"),
                "--server", url,
            )  # fmt: skip
            assert approved.returncode == 0, approved.stderr
        load = [
            "load",
            str(tmp_path / "host.session"),
            "--sealed",
            str(sealed),
            "--host-key",
            str(tmp_path / "host.key"),
        ]
        unattested = run(*load)
        assert unattested.returncode == 1 and "carries none" in unattested.stderr
        loaded = run(*load, "--tcti", tpm.tcti, "--json")
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout)["tensors"] == 104
        released = json.loads(run("ledger", "show", url, "--type", "key.released", "--json").stdout)
        assert released[0]["body"]["attestation"]["verdict"]["result"] == "trusted"
        audit = run(
            "ledger", "verify", url, "--state", str(tmp_path / "audit.json"), "--custody", "--no-witness", "--json"
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        report = json.loads(audit.stdout)["custody"]
        assert report["ok"] and report["releases"][0]["attestation"]["result"] == "trusted"
