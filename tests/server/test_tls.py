"""`strongroom serve` and `strongroom witness serve` over TLS, with client certificates required (mTLS):
certificates made here with `cryptography`, a real server process, real handshakes."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.server.background import free_port
from tests.custody.conftest import SERVER_ENV

SRC = str(Path(__file__).parents[2] / "src")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(folder: Path, name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None, *,
          server: bool = False) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:  # fmt: skip
    """A P-256 certificate: a self-signed CA (``issuer`` None), a server for 127.0.0.1, or a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[1].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key, cert


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = issue(folder, "ca", None)
    issue(folder, "server", ca, server=True)
    issue(folder, "client", ca)
    issue(folder, "stranger", issue(folder, "other-ca", None))  # a client certificate from another CA
    return folder


def client(pki: Path, cert: str | None) -> httpx.Client:
    import ssl

    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return httpx.Client(verify=context, timeout=5, trust_env=False)


@pytest.fixture
def tls_server(tmp_path: Path, pki: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(tmp_path / "srv"), "--port", str(port),
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
        "--tls-client-ca", str(pki / "ca.pem"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC, **SERVER_ENV}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with client(pki, "client") as http:
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if http.get(url + "/checkpoint").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the TLS server did not start"
                time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_only_clients_with_a_certificate_from_the_ca_get_in(tls_server: str, pki: Path) -> None:
    with client(pki, "client") as http:
        assert http.get(tls_server + "/checkpoint").status_code == 200
    for cert in (None, "stranger"):
        with client(pki, cert) as http, pytest.raises(httpx.HTTPError):
            http.get(tls_server + "/checkpoint")
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
        httpx.get(tls_server.replace("https", "http") + "/checkpoint", timeout=5)


def test_commands_reach_a_tls_server_through_the_environment(tls_server: str, pki: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_CA_CERT": str(pki / "ca.pem"),
           "STRONGROOM_CLIENT_CERT": str(pki / "client.pem"),
           "STRONGROOM_CLIENT_KEY": str(pki / "client.key")}  # fmt: skip
    verify = [sys.executable, "-m", "strongroom.cli.main", "ledger", "verify", tls_server, "--state",
              str(tmp_path / "audit.json"), "--no-witness", "--json"]  # fmt: skip
    done = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["origin"].startswith("strongroom.local/log/")
    half = {k: v for k, v in env.items() if k != "STRONGROOM_CLIENT_KEY"}
    refused = subprocess.run(verify, env=half, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "set both STRONGROOM_CLIENT_CERT and STRONGROOM_CLIENT_KEY" in refused.stderr
    untrusted = {k: v for k, v in env.items() if k != "STRONGROOM_CA_CERT"}
    failed = subprocess.run(verify, env=untrusted, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr


def test_the_witness_serves_tls_too(tmp_path: Path, pki: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from strongroom.ledger.note import ED25519, NoteSigner

    vkey = NoteSigner("strongroom.local/log/t", Ed25519PrivateKey.generate(), ED25519).verifier.vkey
    port = free_port()
    command = [
        sys.executable, "-m", "strongroom.cli.main", "witness", "serve", "--data", str(tmp_path / "w"),
        "--name", "witness.test/w", "--log-vkey", vkey, "--port", str(port),
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        with client(pki, None) as http:
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    reply = http.post(f"https://127.0.0.1:{port}/add-checkpoint", content=b"garbage")
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
        assert reply.status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=30)
