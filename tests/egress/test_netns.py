"""The egress layers end to end, as root, in network namespaces this module makes: weight hosts, a gateway
box (gateways and a real ``strongroom serve`` on its loopback), a sink. Real processes throughout: the CLI's
``egress apply`` and ``egress gateway serve``, a real model behind a gateway, kernel rules in the hosts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strongroom.egress import records
from strongroom.egress.budget import BudgetPolicy, ModelHolding, period_start, plan
from strongroom.egress.kernel import Kernel, KernelRules
from strongroom.egress.state import EgressState
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import Entry
from strongroom.server.background import wait_until_serving
from strongroom.signing import Signer
from tests.egress.helpers import MODELS, generate
from tests.egress.netlab import GW_SINK_SIDE, SINK, Lab, Listener, blast, can_connect, inside, lab, stop, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed (.ci/apt-packages has it)"),
]
LEDGER_PORT = 8731
SERVER_ENV = {"STRONGROOM_SERVER_PASSPHRASE": "egress quota lantern harbour"}  # what `serve` encrypts its keys under
GEN_ID = MODELS["gen"]["model_id"]


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    with lab(hosts=3) as made:
        yield made


@pytest.fixture(scope="module")
def ledger(net: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``strongroom serve`` on the gateway box's loopback; returns (URL, data directory)."""
    data = tmp_path_factory.mktemp("egress-ledger") / "data"
    data.mkdir(mode=0o700)
    process = net.python(
        net.gateway_ns, "-m", "strongroom.cli.main", "serve", "--data", str(data), "--port", str(LEDGER_PORT),
        extra_env=SERVER_ENV,
    )  # fmt: skip
    url = f"http://127.0.0.1:{LEDGER_PORT}"
    with inside(net.gateway_ns):
        wait_until_serving(url, process, timeout=60)
    yield url, data
    stop(process)


def gateway_key(data: Path, tmp: Path, name: str) -> tuple[Path, Signer]:
    """A gateway signing key, allowed to append the egress types."""
    key = Signer.generate("ed25519")
    path = tmp / f"{name}.key"
    key.save(path, tmp / f"{name}.pub")
    records.appender_files(data, name, key.verifier)
    return path, key


def query(net: Lab, url: str, entry_type: str) -> list[Entry]:
    with inside(net.gateway_ns):
        client = LedgerClient(url)
        try:
            return [e for _, e in client.query(type=entry_type)]
        finally:
            client.close()


def start_fake_host(net: Lab, host_index: int, port: int, mode: str = "honest") -> None:
    host = net.hosts[host_index]
    process = net.python(host.netns, "-m", "tests.egress.helpers", host.address, str(port), mode)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    assert line.startswith("READY"), line


def start_gateway(net: Lab, tmp: Path, host_index: int, port: int, upstream_port: int, **settings: Any) -> Any:
    host = net.hosts[host_index]
    config = {
        "host_id": f"h{host_index}",
        "listen": f"{GW_SINK_SIDE}:{port}",
        "upstream": f"{host.address}:{upstream_port}",
        "models": {"gen": MODELS["gen"]},
        "budget_bytes": 10**9,
        "rate_bytes_per_s": 1e9,
        "bucket_bytes": 10**9,
        "interval_seconds": 0.5,
        "kernel_netns": host.netns,
        **settings,
    }
    path = tmp / f"gateway-h{host_index}-{port}.json"
    path.write_text(json.dumps(config))
    process = net.python(
        net.gateway_ns, "-m", "strongroom.cli.main", "egress", "gateway", "serve", "--config", str(path)
    )
    up = wait_for(lambda: process.poll() is not None or can_connect(net.sink_ns, GW_SINK_SIDE, port, 0.5), 20)
    assert up and process.poll() is None, stop(process)
    return process


def sink_post(port: int, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    own = client or httpx.Client(timeout=10, trust_env=False)
    try:
        return own.post(
            f"http://{GW_SINK_SIDE}:{port}/v1/generate", content=body, headers={"Content-Type": "application/json"}
        )
    finally:
        if client is None:
            own.close()


def pull(port: int, client: httpx.Client) -> tuple[int, bytes]:
    """(status, body); a request the kernel starved (the host's reply dropped at its quota) counts as refused."""
    try:
        reply = sink_post(port, generate(64), client)
    except httpx.TimeoutException:
        return 0, b""
    return reply.status_code, reply.content


def fresh_rules(net: Lab, i: int, quota: int, ceiling: int | None = None) -> Kernel:
    kernel = Kernel(net.hosts[i].netns)
    kernel.flush_all()
    kernel.apply(KernelRules(f"h{i}", net.hosts[i].gateway, quota, period_start(time.time(), 86_400), ceiling))
    return kernel


def test_the_host_reaches_only_its_gateway(net: Lab, tmp_path: Path) -> None:
    host = net.hosts[0]
    sink = Listener(net.sink_ns, SINK)
    try:
        Kernel(host.netns).flush_all()
        assert can_connect(host.netns, SINK, sink.port)  # control: without the kernel layer the sink is reachable
        assert wait_for(lambda: sink.connections == 1, 5)
        applied = net.run(
            net.gateway_ns, "egress", "apply", "--netns", host.netns, "--host", "h0", "--gateway", host.gateway,
            "--quota-bytes", "5000000", "--ceiling-bits", "8000000", "--json",
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        assert not can_connect(host.netns, SINK, sink.port, timeout=1.0)  # bypassing the gateway: dropped
        # not only TCP: the drop policy answers a local UDP sender EPERM
        with (
            inside(host.netns),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            pytest.raises(PermissionError),
        ):
            udp.sendto(b"x" * 100, (SINK, 53))
        status = net.run(net.gateway_ns, "egress", "status", "--netns", host.netns, "--json")
        reading = json.loads(status.stdout)
        assert reading["installed"] and reading["output_policy"] == "drop"
        assert reading["dropped"]["packets"] >= 2 and reading["ceiling_bits_per_s"] == 8_000_000
        assert sink.connections == 1  # still only the control's
        # the gateway itself is still reachable, at the tc ceiling: 800 kB at 8 Mbit/s takes at least ~0.8 s
        # (a lower bound: a loaded machine only makes it slower, so the bounds below are generous upward)
        other = Listener(net.gateway_ns, host.gateway)
        try:
            started = time.monotonic()
            blast(host.netns, host.gateway, other.port, 800_000, seconds=30, reset=False)
            wait_for(lambda: other.received >= 750_000, 30, 0.05)
            elapsed = time.monotonic() - started
            assert other.received >= 750_000 and elapsed > 0.6
        finally:
            other.close()
    finally:
        sink.close()


def test_traffic_past_the_quota_is_dropped_and_logged(net: Lab, ledger: tuple[str, Path], tmp_path: Path) -> None:
    url, data = ledger
    key, signer = gateway_key(data, tmp_path, "gw-h0")
    fresh_rules(net, 0, quota=200_000)
    start_fake_host(net, 0, 9000)
    gw = start_gateway(net, tmp_path, 0, 9100, 9000, ledger=url, key=str(key), upstream_timeout=1.5)
    other = Listener(net.gateway_ns, net.hosts[0].gateway)
    try:
        blast(net.hosts[0].netns, net.hosts[0].gateway, other.port, 1_000_000, seconds=2.5)
        time.sleep(0.3)
        assert 100_000 < other.received <= 200_000  # the quota counts IP bytes: payload is a little less
        reading = Kernel(net.hosts[0].netns).read()
        assert reading.exhausted and reading.used_bytes >= 200_000

        def exhausted() -> list[Entry]:
            return [
                e for e in query(net, url, records.EXHAUSTED) if e.body["host"] == "h0" and e.body["meter"] == "kernel"
            ]

        found = wait_for(exhausted, 15, 0.3)
        assert found and found[0].body["model_id"] == GEN_ID and found[0].signer == signer.key_id
        assert found[0].body["budget_bytes"] == 200_000
        state = EgressState(trusted=frozenset({signer.key_id}))
        for entry in query(net, url, records.EXHAUSTED) + query(net, url, records.CHECKPOINT):
            state.apply(entry)
        status = state.status("h0", time.time())
        assert status.exhausted and status.rules_installed and status.refusal() is not None
        # the gateway then refuses too: its upstream bytes cannot leave the host any more
        with inside(net.sink_ns):
            refused = sink_post(9100, generate(4))
        assert refused.status_code == 504 and refused.json()["kind"] == "UpstreamTimeout"
    finally:
        other.close()
        stop(gw)


def test_usage_survives_a_gateway_restart_and_a_flush_and_reapply(
    net: Lab, ledger: tuple[str, Path], tmp_path: Path
) -> None:
    url, data = ledger
    key, _ = gateway_key(data, tmp_path, "gw-h1")
    host = net.hosts[1]
    kernel = fresh_rules(net, 1, quota=1_000_000)
    start_fake_host(net, 1, 9001)
    budget = 40_000
    settings = {"ledger": url, "key": str(key), "budget_bytes": budget}
    gw = start_gateway(net, tmp_path, 1, 9101, 9001, **settings)
    delivered = 0
    with inside(net.sink_ns), httpx.Client(timeout=10, trust_env=False) as client:
        for _ in range(30):
            reply = sink_post(9101, generate(16), client)
            assert reply.status_code == 200
            delivered += len(reply.content)
        remaining_before = int(reply.headers["X-Egress-Remaining"])
    stop(gw)  # SIGTERM: a final checkpoint
    kernel_before = kernel.read().used_bytes
    assert kernel_before > 20_000
    kernel.flush_all()  # a reboot, or an operator's flush: the kernel's count is gone ...
    assert not kernel.read().installed
    applied = net.run(
        net.gateway_ns, "egress", "apply", "--netns", host.netns, "--host", "h1", "--gateway", host.gateway,
        "--quota-bytes", "1000000", "--ledger", url, "--json",
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    restored = json.loads(applied.stdout)["used_bytes"]
    assert restored >= kernel_before - 2_000  # ... and back from the last checkpoint (taken before the stop)
    gw = start_gateway(net, tmp_path, 1, 9102, 9001, **settings)
    try:
        statuses = []
        with inside(net.sink_ns), httpx.Client(timeout=10, trust_env=False) as client:
            for _ in range(100):
                reply = sink_post(9102, generate(16), client)
                statuses.append(reply.status_code)
                if reply.status_code != 200:
                    assert reply.json()["kind"] == "EgressBudgetSpent"
                    break
                if len(statuses) == 1:
                    assert int(reply.headers["X-Egress-Remaining"]) < remaining_before  # not reset to the budget
                delivered += len(reply.content)
        assert statuses[-1] == 429 and delivered <= budget
        assert statuses.count(200) < 30  # the restarted gateway did not grant a fresh budget
    finally:
        stop(gw)


def test_three_colluding_hosts_cannot_move_more_than_the_fleet_budget(
    net: Lab, ledger: tuple[str, Path], tmp_path: Path
) -> None:
    policy = BudgetPolicy(compression=100, horizon_seconds=90 * 86_400, period_seconds=86_400)
    fleet_bytes_target = 300_000
    size = fleet_bytes_target * 100 * 90  # a 2.7 GB model: its fleet budget is 300 KB a day
    hosts = ("h0", "h1", "h2")
    budget = plan([ModelHolding(GEN_ID, size, hosts)], policy, max_response_bytes=16_384)
    fleet = budget.fleets[GEN_ID].fleet_bytes
    assert fleet == fleet_bytes_target and budget.fleet_exposure(GEN_ID) <= fleet
    gateways, listeners = [], []
    try:
        for i, name in enumerate(hosts):
            share = budget.hosts[name]
            fresh_rules(net, i, quota=share.quota_bytes)
            start_fake_host(net, i, 9010)
            gateways.append(
                start_gateway(net, tmp_path, i, 9110 + i, 9010, budget_bytes=share.gateway_bytes, upstream_timeout=2)
            )
            listeners.append(Listener(net.gateway_ns, net.hosts[i].gateway))
        through_gateways = 0
        with inside(net.sink_ns), httpx.Client(timeout=5, trust_env=False) as client:
            for _ in range(400):  # every host pulls through its gateway until refused
                answered = [pull(9110 + i, client) for i in range(3)]
                through_gateways += sum(len(body) for status, body in answered if status == 200)
                if all(status != 200 for status, _ in answered):
                    break
        for i in range(3):  # ... and pushes the rest around it, straight at the gateway box
            blast(net.hosts[i].netns, net.hosts[i].gateway, listeners[i].port, 500_000, seconds=1.5)
        time.sleep(0.3)
        around = sum(listener.received for listener in listeners)
        assert through_gateways + around <= fleet
        assert through_gateways > 0.5 * fleet * policy.gateway_fraction  # the test did reach the limits
    finally:
        for listener in listeners:
            listener.close()
        for process in gateways:
            stop(process)


def test_the_meters_disagree_when_traffic_goes_around_the_gateway(
    net: Lab, ledger: tuple[str, Path], tmp_path: Path
) -> None:
    url, data = ledger
    key, signer = gateway_key(data, tmp_path, "gw-h2")
    fresh_rules(net, 2, quota=50_000_000)
    start_fake_host(net, 2, 9002)
    gw = start_gateway(net, tmp_path, 2, 9120, 9002, ledger=url, key=str(key))
    other = Listener(net.gateway_ns, net.hosts[2].gateway)
    try:
        with inside(net.sink_ns), httpx.Client(timeout=10, trust_env=False) as client:
            for _ in range(200):  # honest traffic only: the meters agree
                assert sink_post(9120, generate(64), client).status_code == 200
        time.sleep(1.2)
        mine = [e for e in query(net, url, records.CHECKPOINT) if e.body["host"] == "h2"]
        agreed = [e.body["meters"]["reconcile"] for e in mine if e.body["meters"]["reconcile"]]
        assert agreed and not any(r["alarm"] for r in agreed)
        busiest = max(agreed, key=lambda r: r["gateway_bytes"])
        assert busiest["gateway_bytes"] > 100_000 and busiest["ratio"] < 0.02
        assert not [e for e in query(net, url, records.ALARM) if e.body["host"] == "h2"]
        blast(net.hosts[2].netns, net.hosts[2].gateway, other.port, 300_000, seconds=2, reset=False)

        def gap() -> list[Entry]:
            return [
                e for e in query(net, url, records.ALARM) if e.body["host"] == "h2" and e.body["kind"] == "meter-gap"
            ]

        alarms = wait_for(gap, 15, 0.3)
        assert alarms and alarms[0].body["model_id"] == GEN_ID
        assert alarms[0].body["detail"]["gap_bytes"] >= 250_000
        state = EgressState(trusted=frozenset({signer.key_id}))
        for entry in alarms + query(net, url, records.CHECKPOINT):
            state.apply(entry)
        status = state.status("h2", time.time())
        assert [a.kind for a in status.open_alarms] == ["meter-gap"]
        assert "open egress alarm" in (status.refusal() or "")
        later = wait_for(
            lambda: [e for e in query(net, url, records.CHECKPOINT) if e.body["host"] == "h2" and e.body["tightened"]]
        )
        assert later  # the alarm tightened the host's rate
    finally:
        other.close()
        stop(gw)


def test_a_real_model_behind_the_gateway(net: Lab, tmp_path: Path, model_dir: Path) -> None:
    fresh_rules(net, 1, quota=50_000_000)
    host = net.hosts[1]
    server = net.python(
        host.netns, "-m", "strongroom.cli.main", "egress", "inference", "serve", "--listen", f"{host.address}:9300",
        "--embedding", f"minilm={model_dir}", "--generation", "tiny=0",
    )  # fmt: skip
    assert server.stdout is not None
    assert b"inference server" in server.stdout.readline()
    models = {
        "minilm": {"kind": "embedding", "model_id": "blake3:" + "1" * 64, "dimension": 384},
        "tiny": {"kind": "generation", "model_id": "blake3:" + "2" * 64, "vocab_size": 1000},
    }
    gw = start_gateway(net, tmp_path, 1, 9130, 9300, models=models)
    try:
        with inside(net.sink_ns), httpx.Client(timeout=30, trust_env=False) as client:
            base = f"http://{GW_SINK_SIDE}:9130"
            texts = ["custody of model weights", "custody of model weights", "a bowl of soup"]
            reply = client.post(f"{base}/v1/embeddings", json={"model": "minilm", "input": texts})
            assert reply.status_code == 200, reply.text
            vectors = reply.json()["embeddings"]
            assert [len(v) for v in vectors] == [384, 384, 384]
            same = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
            other = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
            assert same > 0.999 and other < 0.8
            reply = client.post(
                f"{base}/v1/generate", json={"model": "tiny", "prompt_tokens": [5, 6, 7], "max_tokens": 12}
            )
            assert reply.status_code == 200, reply.text
            assert len(reply.json()["tokens"]) == 12 and len(reply.json()["text"]) == 12
            refused = client.post(f"{base}/v1/generate", json={"model": "minilm", "prompt": "x", "max_tokens": 2})
            assert refused.status_code == 400
    finally:
        stop(gw)
        stop(server)
