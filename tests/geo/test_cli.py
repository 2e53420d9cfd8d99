"""The commands end to end: enrol landmarks, serve them in their namespaces, prove from the host's, verify
and append to a ledger, audit the statement from its opening, show the host's verdict."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer

from .netlab import PLACES, SERVICE_PORT, GeoLab

SRC = str(Path(__file__).parents[2] / "src")
LANDMARKS = ["salina", "tulsa", "kansas-city", "oklahoma-city", "omaha"]
ENV = {**os.environ, "PYTHONPATH": SRC}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert not check or done.returncode == 0, done.stderr
    return done


def test_enrol_serve_prove_verify_audit_show(tmp_path: Path) -> None:
    registry = tmp_path / "landmarks.json"
    for name in LANDMARKS:
        lat, lon = PLACES[name]
        cli(
            "geo",
            "landmark",
            "enrol",
            name,
            "--latitude",
            str(lat),
            "--longitude",
            str(lon),
            "--survey",
            "test fixture",
            "--key",
            str(tmp_path / f"{name}.key"),
            "--registry",
            str(registry),
        )
    again = cli(
        "geo",
        "landmark",
        "enrol",
        "salina",
        "--latitude",
        "1",
        "--longitude",
        "1",
        "--survey",
        "x",
        "--key",
        str(tmp_path / "other.key"),
        "--registry",
        str(registry),
        check=False,
    )
    assert again.returncode == 1 and "already enrolled" in again.stderr
    assert (tmp_path / "salina.key").stat().st_mode & 0o777 == 0o600
    host = Signer.generate("ed25519")
    host.save(tmp_path / "host.key", tmp_path / "host.pub")

    lab = GeoLab({n: PLACES[n] for n in [*LANDMARKS, "wichita"]}).start(tmp_path)
    data = tmp_path / "srv"
    services = open_services(data)
    try:
        servers = [
            lab.spawn(
                name,
                [
                    sys.executable,
                    "-m",
                    "strongroom.cli.main",
                    "geo",
                    "landmark",
                    "serve",
                    "--id",
                    name,
                    "--key",
                    str(tmp_path / f"{name}.key"),
                    "--listen",
                    lab.nodes[name].address,
                    "--port",
                    str(SERVICE_PORT),
                ],
                stdout=subprocess.PIPE,
                env=ENV,
            )
            for name in LANDMARKS
        ]
        for server in servers:  # each prints its line once its sockets are bound
            assert server.stdout is not None
            ready, _, _ = select.select([server.stdout], [], [], 30)
            assert ready and b"serving on" in server.stdout.readline()
        at = [f"--at={n}={':'.join(map(str, lab.address_of('wichita', n)))}" for n in LANDMARKS]
        proof = tmp_path / "proof.json"
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.nodes["wichita"].namespace,
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "geo",
                "prove",
                "h1",
                "--key",
                str(tmp_path / "host.key"),
                "--landmarks",
                str(registry),
                *at,
                "--out",
                str(proof),
                "--samples",
                "6",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(json.loads(proof.read_text())["reports"]) == len(LANDMARKS)

        (data / "appenders").mkdir(exist_ok=True)
        Signer.generate("ed25519").save(tmp_path / "geo.key", data / "appenders" / "geo.pub")
        (data / "appenders" / "geo.types").write_text("geo.verdict\n")
        with BackgroundServer(create_app(services, data)) as url:
            verified = cli(
                "geo",
                "verify",
                str(proof),
                "--landmarks",
                str(registry),
                "--host-key",
                str(tmp_path / "host.pub"),
                "--allow",
                "US",
                "--opening-out",
                str(tmp_path / "opening.json"),
                "--statement-out",
                str(tmp_path / "statement.json"),
                "--ledger",
                url,
                "--signer-key",
                str(tmp_path / "geo.key"),
                "--json",
            )
            result = json.loads(verified.stdout)
            assert (result["statement"]["verdict"], result["statement"]["country"]) == ("IN", "US")
            assert (tmp_path / "opening.json").stat().st_mode & 0o777 == 0o600
            audited = cli(
                "geo",
                "audit",
                "--statement",
                str(tmp_path / "statement.json"),
                "--opening",
                str(tmp_path / "opening.json"),
                "--landmarks",
                str(registry),
                "--host-key",
                str(tmp_path / "host.pub"),
                "--json",
            )
            assert json.loads(audited.stdout)["verdict"] == "IN(US)"
            statement = json.loads((tmp_path / "statement.json").read_text())
            (tmp_path / "forged.json").write_text(json.dumps({**statement, "country": "CA"}))
            forged = cli(
                "geo",
                "audit",
                "--statement",
                str(tmp_path / "forged.json"),
                "--opening",
                str(tmp_path / "opening.json"),
                "--landmarks",
                str(registry),
                check=False,
            )
            assert forged.returncode == 1 and "record gives IN(US)" in forged.stderr
            shown = cli("geo", "show", "h1", "--ledger", url, "--json")
            assert json.loads(shown.stdout)["country"] == "US"
            unknown = cli("geo", "show", "h2", "--ledger", url, check=False)
            assert unknown.returncode == 1 and unknown.stderr.startswith("error: h2: no verdict within 60 minutes")
            assert json.loads(cli("geo", "show", "h2", "--ledger", url, "--json").stdout) is None
    finally:
        services.close()
        lab.close()
