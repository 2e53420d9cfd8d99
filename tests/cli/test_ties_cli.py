"""Officers enrol a landmark, a host's gateway and a location verifier, and clear egress alarms, by command
line against a real 'strongroom serve' process; one officer is refused where the quorum is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from strongroom.server.background import serve_process
from tests.cli.test_custody_cli import SRC, enrol_host, officers
from tests.cli.test_seal_cli import CLI_PASSPHRASE, run
from tests.custody.conftest import SERVER_ENV


def test_landmarks_gateways_and_alarm_clearance_by_command_line(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    two = officers(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_PASSPHRASE": CLI_PASSPHRASE, **SERVER_ENV}
    with serve_process(data, env=env) as url:
        enrol_host(tmp_path, url, two, "gpu-01")
        made = run(
            "geo", "landmark", "enrol", "lbn-1", "--latitude", "39.83", "--longitude", "-98.58",
            "--survey", "GNSS", "--key", str(tmp_path / "lbn-1.key"), "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        body = tmp_path / "lbn-1.json"
        body.write_text(made.stdout)
        alone = run("admin", "landmark", "enrol", str(body), *two[:2], "--server", url)
        assert alone.returncode != 0 and "needs 2 distinct officers" in alone.stderr
        assert "Traceback" not in alone.stderr
        enrolled = run("admin", "landmark", "enrol", str(body), *two, "--server", url, "--json")
        assert enrolled.returncode == 0, enrolled.stderr
        assert json.loads(enrolled.stdout)["subject"] == "landmark:lbn-1"
        flagged = run("admin", "landmark", "flag", "lbn-1", *two[:2], "--reason", "RTTs off", "--server", url)
        assert flagged.returncode == 0, flagged.stderr  # one officer: it only takes away
        assert run("keys", "gen-signer", str(tmp_path / "gw"), "--type", "ed25519").returncode == 0
        gateway = run(
            "admin", "appender", "gw-gpu-01", "--public-key", str(tmp_path / "gw.pub"), "--host", "gpu-01",
            "--type", "egress.checkpoint", "--type", "egress.alarm", "--type", "egress.exhausted", *two,
            "--server", url,
        )  # fmt: skip
        assert gateway.returncode == 0, gateway.stderr
        clear = run("admin", "egress-clear", "gpu-01", "ab" * 16, "--reason", "none open", *two, "--server", url)
        assert clear.returncode != 0 and "no egress alarm" in clear.stderr and "Traceback" not in clear.stderr
