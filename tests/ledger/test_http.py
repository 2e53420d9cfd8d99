"""The ledger over HTTP: C2SP tile reads with the right caching, authorised appends, auditor verification."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom.ledger import merkle
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.entries import make_entry
from strongroom.ledger.errors import LedgerError, NoteError, SplitViewError
from strongroom.ledger.note import COSIGNATURE_V1, NoteSigner
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer, free_port, wait_until_serving
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated

SRC = str(Path(__file__).parents[2] / "src")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "srv"
    services = open_services(data)
    with BackgroundServer(create_app(services, data)) as url:
        yield url, data
    services.close()


def operator(data: Path) -> Signer:
    """An appender allowed to write model.evaluated (DATA/appenders/test.pub); the key lives beside DATA."""
    key = data.parent / "appender.key"
    if not key.exists():
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        (data / "appenders").mkdir(exist_ok=True)
        Signer.generate("ed25519").save(key, data / "appenders" / "test.pub")
    return Signer.load(key)


def test_tiles_entries_and_caching(served: tuple[str, Path]) -> None:
    url, data = served
    client = LedgerClient(url)
    for i in range(260):
        client.append(evaluated(operator(data), i))
    http = httpx.Client(base_url=url)
    checkpoint = http.get("/checkpoint")
    assert checkpoint.headers["cache-control"] == "no-cache" and checkpoint.text.startswith("strongroom.local/log/")
    full = http.get("/tile/0/000")
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable" and len(full.content) == 256 * 32
    partial = http.get("/tile/0/001.p/4")
    assert partial.headers["cache-control"] == "no-cache" and len(partial.content) == 4 * 32
    assert http.get("/tile/0/001.p/5").status_code == 404
    assert http.get("/tile/1/000.p/1").content == merkle.root_from_leaves(
        [merkle.leaf_hash(e) for e in client.entries(256)]
    )
    assert http.get("/tile/0/x1/000").status_code == 400
    assert http.get("/tile/entries/000").headers["cache-control"] == "public, max-age=31536000, immutable"
    assert len(client.entries(260)) == 260
    assert http.get("/log.vkey").text.strip() == (data / "log.vkey").read_text().strip()


def test_only_authorised_keys_append(served: tuple[str, Path]) -> None:
    url, data = served
    client = LedgerClient(url)
    with pytest.raises(LedgerError, match="403.*not authorised"):
        client.append(evaluated(Signer.generate("ed25519"), 1))
    (data / "appenders").mkdir()
    evaluator = Signer.generate("ecdsa-p256")
    evaluator.save(data / "evaluator.key", data / "appenders" / "evaluator.pub")
    assert client.append(evaluated(evaluator, 2))["index"] == 0
    with pytest.raises(LedgerError, match="400.*signature does not verify"):
        raw = json.loads(evaluated(evaluator, 3))
        raw["body"]["suite"] = "tampered"
        client.append(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode())
    huge = httpx.post(url + "/add", content=b"x" * 70_000)
    assert huge.status_code == 413


def test_auditor_pins_key_checks_consistency_and_witnesses(served: tuple[str, Path], tmp_path: Path) -> None:
    url, data = served
    client = LedgerClient(url)
    for i in range(5):
        client.append(evaluated(operator(data), i))
    state = tmp_path / "auditor.json"
    report = verify_log(client, state, full=True, indices=[0, 4], min_witnesses=0)
    assert (report.size, report.verified_entries, report.full_history) == (5, [0, 4], True)
    client.append(evaluated(operator(data), 5))
    assert verify_log(client, state, min_witnesses=0).previous_size == 5
    witness = NoteSigner("witness.example/w", Ed25519PrivateKey.generate(), COSIGNATURE_V1)
    with pytest.raises(NoteError, match="0 valid witness cosignature"):
        verify_log(client, state, witnesses=[witness.verifier], min_witnesses=1)


def _clone_log_with(data: Path, target: Path, entries: list[bytes]) -> Iterator[str]:
    """Another history under the same log key: what a misbehaving operator could show someone else."""
    target.mkdir(mode=0o700)
    for name in ("log.key", "log.origin", "service.key", "service.pub"):
        shutil.copy(data / name, target / name)
    services = open_services(target)
    for raw in entries:
        services.ledger.append(raw)
    with BackgroundServer(create_app(services, target)) as url:
        yield url
    services.close()


def test_split_view_and_rollback_are_detected(served: tuple[str, Path], tmp_path: Path) -> None:
    url, data = served
    client = LedgerClient(url)
    raws = [evaluated(operator(data), i) for i in range(6)]
    for raw in raws:
        client.append(raw)
    state = tmp_path / "auditor.json"
    verify_log(client, state, min_witnesses=0)
    forked = [*raws[:3], evaluated(operator(data), 99), *raws[4:], evaluated(operator(data), 7)]
    for fork_url in _clone_log_with(data, tmp_path / "fork", forked):
        with pytest.raises(SplitViewError, match="split view"):
            verify_log(LedgerClient(fork_url), state, min_witnesses=0)
    for short_url in _clone_log_with(data, tmp_path / "short", raws[:4]):
        with pytest.raises(SplitViewError, match="rollback"):
            verify_log(LedgerClient(short_url), state, min_witnesses=0)


def test_sigkill_mid_stream_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    data, port = tmp_path / "srv", free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "STRONGROOM_SERVER_PASSPHRASE": "server keys sextant marigold"}
    command = [sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(data), "--port", str(port)]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        return process

    signer = operator(data)
    server = start()
    acknowledged: dict[int, str] = {}
    stop = threading.Event()

    def stream(worker: int) -> None:
        client = LedgerClient(f"http://127.0.0.1:{port}", timeout=5)
        i = 0
        while not stop.is_set():
            try:
                receipt = client.append(
                    make_entry(
                        "model.evaluated",
                        {"model_id": "blake3:" + "cd" * 32, "suite": f"w{worker}-{i}", "results": {}, "evaluator": "e"},
                        signer,
                    )
                )
            except LedgerError:
                return
            acknowledged[receipt["index"]] = receipt["leaf_hash"]
            i += 1

    workers = [threading.Thread(target=stream, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    while len(acknowledged) < 150:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for w in workers:
        w.join()
    server = start()
    try:
        client = LedgerClient(f"http://127.0.0.1:{port}")
        report = verify_log(client, tmp_path / "state.json", full=True, min_witnesses=0)
        assert report.size >= len(acknowledged) >= 150
        stored = client.entries(report.size)
        for index, leaf in acknowledged.items():
            assert merkle.leaf_hash(stored[index]).hex() == leaf, index
    finally:
        server.kill()
        server.wait()


def test_bundles_are_all_or_nothing(served: tuple[str, Path]) -> None:
    url, data = served
    client = LedgerClient(url)
    raws = [evaluated(operator(data), i) for i in range(20)]
    receipts = client.append_bundle(raws)
    assert [r["index"] for r in receipts] == list(range(20))
    forged = json.loads(evaluated(operator(data), 99))
    forged["body"]["suite"] = "changed"
    bad = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(LedgerError, match="400.*signature does not verify"):
        client.append_bundle([evaluated(operator(data), 21), bad])
    with pytest.raises(LedgerError, match="403"):
        client.append_bundle([evaluated(Signer.generate("ed25519"), 22)])
    assert json.loads(httpx.get(url + "/v1/proof/inclusion", params={"index": 19, "size": 20}).text)["size"] == 20
    assert client.append_bundle(raws[:2])[0]["duplicate"] is True
    assert len(client.entries(20)) == 20
    assert httpx.get(url + "/checkpoint").text.split("\n")[1] == "20"
