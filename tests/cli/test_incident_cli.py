"""The incident commands against a real 'strongroom serve' process: playbooks, declare (one officer),
the freeze at the gate, acknowledgements, status, a contain step repeated, the timeline as JSON and HTML,
rotation (two officers), lift (two officers and a custodian); errors are one line, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

from strongroom.server.background import serve_process
from tests.cli.test_custody_cli import SRC, enrol, enrol_host, officers, request_as_alice
from tests.cli.test_seal_cli import CLI_PASSPHRASE, run
from tests.custody.conftest import SERVER_ENV


def test_playbook_show_and_export(tmp_path: Path) -> None:
    shown = run("incident", "playbook", "show", "leak", "--json")
    assert shown.returncode == 0, shown.stderr
    steps = json.loads(shown.stdout)["steps"]
    assert [s["step"] for s in steps][:3] == ["declare", "brief-executive", "retire-hosts"]
    assert run("incident", "playbook", "export", "leak", str(tmp_path / "leak.json")).returncode == 0
    assert json.loads((tmp_path / "leak.json").read_text())["spec_version"] == "cacao-2.0"
    missing = run("incident", "playbook", "show", "nonesuch")
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr


def test_the_playbook_by_command_line(tmp_path: Path, model_dir: Path) -> None:
    keys, sealed, data = tmp_path / "keys", tmp_path / "sealed", tmp_path / "srv"
    assert run("keys", "init", str(keys)).returncode == 0
    model_id = json.loads(run("seal", str(model_dir), str(sealed), "--keys", str(keys), "--json").stdout)["model_id"]
    two = officers(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": CLI_PASSPHRASE, **SERVER_ENV}
    with serve_process(data, "--keys", str(keys), env=env) as url:
        enrol(tmp_path, url, two, [("alice", 3), ("bob", 4), ("carol", 5)])
        assert run("register", str(sealed), *two, "--required-tier", "3", "--server", url).returncode == 0
        enrol_host(tmp_path, url, two, "gpu-07")
        request_id = request_as_alice(tmp_path, model_id, "gpu-07", tmp_path / "host.session", url)
        exported = tmp_path / "ours.json"
        assert run("incident", "playbook", "export", "leak", str(exported)).returncode == 0
        alone = run("incident", "playbook", "adopt", "leak", str(exported), *two[:2], "--server", url)
        assert alone.returncode == 1 and "needs 2 distinct officers" in alone.stderr
        assert run("incident", "playbook", "adopt", "leak", str(exported), *two, "--server", url).returncode == 0

        declared = run("incident", "declare", f"model:{model_id}", *two[:2], "--summary", "paste site",
                       "--server", url, "--json")  # fmt: skip
        assert declared.returncode == 0, declared.stderr
        incident = json.loads(declared.stdout)["incident"]
        for approver in ("bob", "carol"):
            frozen = run("approve", request_id[:12], "--person", approver, "--key", str(tmp_path / f"{approver}.key"),
                         "--server", url)  # fmt: skip
            assert frozen.returncode == 1 and "frozen by incident" in frozen.stderr

        acked = run("incident", "ack", incident, "brief-executive", "--key", str(tmp_path / "bob.key"), "--as", "bob",
                    "--server", url)  # fmt: skip
        assert acked.returncode == 0, acked.stderr
        for _ in range(2):
            contained = run("incident", "contain", incident, "retire-hosts", *two[:2], "--host", "gpu-07",
                            "--server", url, "--json")  # fmt: skip
            assert contained.returncode == 0, contained.stderr
        assert json.loads(contained.stdout)["already"] is True
        retires = json.loads(run("ledger", "show", url, "--type", "host.changed", "--json").stdout)
        assert [e["body"]["change"] for e in retires] == ["enrol", "retire"]

        status = json.loads(run("incident", "status", incident, "--server", url, "--json").stdout)
        states = {s["step"]: s["state"] for s in status["steps"]}
        assert states["declare"] == states["brief-executive"] == states["retire-hosts"] == "done"
        assert states["lift"] == "open" and status["open"]

        page = tmp_path / "timeline.html"
        shown = run("incident", "timeline", url, "--state", str(tmp_path / "state.json"), "--no-witness",
                    "--json", "--html", str(page))  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        kinds = [e["kind"] for e in json.loads(shown.stdout)["events"]]
        assert "admin" in kinds and "people" in kinds and "<table>" in page.read_text()
        unwitnessed = run("incident", "timeline", url, "--state", str(tmp_path / "fresh.json"))
        assert unwitnessed.returncode == 1 and "Without a witness" in unwitnessed.stderr

        rotated = run("incident", "rotate", str(sealed), str(tmp_path / "rotated"), "--keys", str(keys), *two,
                      "--server", url, "--json")  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["action"] == "model.rekey"
        retired = run("incident", "retire-key", str(sealed), "--server", url, "--json")
        assert retired.returncode == 0 and "ledger" in json.loads(retired.stdout)["action"]

        carol = ["--custodian-key", str(tmp_path / "carol.key")]
        short = run("incident", "lift", incident, *two[:2], *carol, "--server", url)
        assert short.returncode == 1 and "needs 2 distinct officers" in short.stderr
        lifted = run("incident", "lift", incident, *two, *carol, "--server", url)
        assert lifted.returncode == 0, lifted.stderr
        status = json.loads(run("incident", "status", incident, "--server", url, "--json").stdout)
        assert not status["open"]


def test_demo_incident_json(tmp_path: Path) -> None:
    result = run("demo-incident", "--workdir", str(tmp_path / "demo"), "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    story = json.loads(result.stdout)
    assert story["timeline_culprit"] == story["attributed"] == story["leaked_release"]
    assert story["audit"]["ok"] and "frozen by incident" in story["freeze_refusal"]
    again = run("demo-incident", "--workdir", str(tmp_path / "demo"))
    assert again.returncode == 1 and again.stderr.startswith("error:") and "must be empty" in again.stderr
