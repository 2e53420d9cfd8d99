"""Quorum release under load: 200 concurrent clients drive request, two approvals and release over HTTP.

    python benchmarks/bench_custody.py [--clients 200] [--seconds 10] [--think 0.5] [--postgres URL]

Each client is one host acting for one requester, looping for ``--seconds``: it submits a request, two
people approve it (one a SenL-5 custodian) and the host collects the release, then it starts over. The
clients run in four processes (one event loop driving all 200 queues their requests behind each other);
they join over the first second and only flows begun after it count. Four load shapes, each reporting flows/s
and the release step's p50/p99 as the clients see it and inside the server (its ``Server-Timing`` header);
the target is p99 < 100 ms on this machine:

- paced: before each step the person or host pauses (exponential, mean ``--think`` s; real approvers take
  minutes), which keeps the offered load below what the server can carry;
- flat out: no pause at all, so the server is saturated and every step queues (Little's law);
- herd: every client starts one flow at the same instant, so their releases arrive together;
- quiet: one flow at a time, the release step's own cost.

Beside the two looping shapes, benchmarks/fsync_probe.py fsyncs small appends on the same disk: the
reference for what a durable write costs here, and a record of the disk's own stalls (every release waits
for a durable ledger append, so a stalled disk stalls releases); releases clear of those stalls are
reported too. Finally it proves that no request was released twice and that every release has exactly one
key.released entry on the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvloop

from strongroom.custody import admin
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.host import HostSession
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.protocol import ReleaseRequest, new_approval
from strongroom.keys import LocalKeyring
from strongroom.keys.provider import KeyBinding
from strongroom.ledger.client import LedgerClient
from strongroom.server.background import serve_process
from strongroom.signing import Signer

BENCH_PASSPHRASE = "bench walnut harbour violet"

MODEL = "blake3:" + "5e" * 32
RAMP = 1.0  # seconds over which the looping clients join
PROCESSES = 4  # client processes for the looping shapes
SETTLE = 0.5  # seconds after a disk stall during which releases still queue behind it
HOSTS: dict[int, Signer] = {}  # client number -> that host's identity key
TRACE: list[str] = []  # --trace FILE: where to write each looping run's releases and disk stalls


def run(workdir: Path, database: str | None, clients: int, seconds: float, think: float) -> None:
    keyring = LocalKeyring.init(workdir / "keys", passphrase=BENCH_PASSPHRASE, scrypt_n=2**10)
    _, wrapped = keyring.generate_data_key(KeyBinding("5e" * 16, MODEL))
    env = {**os.environ, "STRONGROOM_PASSPHRASE": BENCH_PASSPHRASE, "STRONGROOM_SERVER_PASSPHRASE": BENCH_PASSPHRASE}
    extra = ["--keys", str(workdir / "keys"), *(["--database", database] if database else [])]
    officers = [Signer.generate("ed25519") for _ in range(2)]
    (workdir / "srv").mkdir(mode=0o700)
    (workdir / "srv" / "officers").mkdir()
    for n, officer in enumerate(officers):
        (workdir / "srv" / "officers" / f"officer{n}.pub").write_bytes(officer.verifier.pem())
    with serve_process(workdir / "srv", *extra, env=env) as url:
        client = CustodyClient(url)
        client.admin(admin.propose(admin.register_model(ModelPolicy(MODEL, 3, 2), wrapped), officers))
        people = enrol(client, officers, clients)
        HOSTS.update((i, Signer.generate("ed25519")) for i in range(clients))
        for i in range(clients):
            key = HOSTS[i].verifier.pem().decode()
            host = admin.enrol_host(f"host-{i}", name=f"host-{i}", site="bench", owner="bench", public_key=key)
            client.admin(admin.propose(host, officers))
        client.close()
        paced = loop_clients(url, people, clients, seconds, think, workdir)
        flat_out = loop_clients(url, people, clients, seconds, 0.0, workdir)
        herd = loop_clients(url, people, clients, 0.0, 0.0, workdir, once=True)
        quiet = uvloop.run(one_flow_each(url, people, min(clients, 30), concurrency=1))
        logged = [e.body["request_id"] for _, e in LedgerClient(url).query(type="key.released")]
    backend = "PostgreSQL" if database else "SQLite"
    for title, load in [
        (f"{clients} clients looping for {seconds:.0f} s, people taking {think:.2f} s (mean) before each step", paced),
        (f"{clients} clients looping for {seconds:.0f} s with no pause at all (the server saturated)", flat_out),
    ]:
        clear = load.clear_of_stalls()
        disk = load.disk
        print(f"{backend}: {title}: {load.rate:.1f} flows/s")
        print(f"  release step seen by the clients: {load.seen()} -> p99 {load.p99_seen() * 10:.2f}x the 100 ms target")
        print(f"  release step inside the server:   {load.inside()}")
        print(
            f"  the disk itself (fsync probe beside it): p50 {disk['p50_ms']:.2f} ms, p99 {disk['p99_ms']:.2f} ms, "
            f"max {disk['max_ms']:.0f} ms; {len(disk['stalls'])} stalls over 20 ms"
        )
        print(f"  releases not during a stall or the {SETTLE} s after one: {load.seen(clear)}")
    print(
        f"{backend}: {clients} flows started at the same instant: {herd.rate:.1f} flows/s, release step {herd.seen()}"
    )
    print(f"{backend}: one flow at a time: release step {quiet.seen()}")
    released = [r for run in (paced, flat_out, herd, quiet) for r in run.released]
    assert len(set(released)) == len(released), "a request was released twice"
    assert sorted(logged) == sorted(released), "releases and key.released entries differ"
    print(f"  {len(released)} releases, all distinct, each with exactly one key.released entry on the ledger")


def start_fsync_probe(directory: Path, seconds: float) -> subprocess.Popen[bytes]:
    """benchmarks/fsync_probe.py on the same disk, for ``seconds``, in its own process."""
    probe = Path(__file__).with_name("fsync_probe.py")
    return subprocess.Popen([sys.executable, str(probe), str(directory), str(seconds)], stdout=subprocess.PIPE)


def probe_report(process: subprocess.Popen[bytes], run: Run) -> None:
    out, _ = process.communicate(timeout=120)
    run.disk = json.loads(out)
    if TRACE:
        trace = {"stalls": run.disk["stalls"], "releases": [[r.start, r.seen, r.inside] for r in run.counted]}
        Path(TRACE[0]).with_suffix(f".{len(TRACE)}.json").write_text(json.dumps(trace))
        TRACE.append(TRACE[0])


def enrol(client: CustodyClient, officers: list[Signer], clients: int) -> dict[str, Signer]:
    """Enrol bob (SenL-4), carol (SenL-5 custodian) and one SenL-3 requester per client (two officers each)."""
    people: dict[str, Signer] = {}
    vetted = date.today() - timedelta(days=10)
    for person, tier, custodian in [("bob", 4, False), ("carol", 5, True)] + [
        (f"r{i}", 3, False) for i in range(clients)
    ]:
        people[person] = Signer.generate("ed25519")
        proposal = admin.enrol_person(
            person,
            name=person,
            public_key=people[person].verifier.pem().decode(),
            position="p",
            tier=tier,
            custodian=custodian,
            vetted_on=vetted,
        )
        client.admin(admin.propose(proposal, officers))
    return people


@dataclass
class Run:
    """The releases of one load shape (all of them, and those counted), and the rate of counted flows."""

    released: list[str] = field(default_factory=list)
    counted: list[Release] = field(default_factory=list)
    rate: float = 0.0
    disk: dict[str, Any] = field(default_factory=dict)  # the fsync probe's report, when one ran beside it

    def seen(self, releases: list[Release] | None = None) -> str:
        return percentiles([r.seen for r in (self.counted if releases is None else releases)])

    def inside(self) -> str:
        return percentiles([r.inside for r in self.counted])

    def p99_seen(self) -> float:
        return p99([r.seen for r in self.counted])

    def clear_of_stalls(self) -> list[Release]:
        """Releases that neither overlapped a stall of the disk itself (a probe fsync over 20 ms) nor began
        within SETTLE seconds after one, while the work queued behind the stall drains."""
        stalls = self.disk.get("stalls", [])
        return [r for r in self.counted if not any(a < r.start + r.seen and r.start < b + SETTLE for a, b in stalls)]


@dataclass(frozen=True)
class Release:
    request_id: str
    start: float  # monotonic clock, shared with the fsync probe's process
    seen: float  # seconds, as the client saw it
    inside: float  # seconds, as the server timed it (Server-Timing)


async def flow(http: httpx.AsyncClient, people: dict[str, Signer], i: int, think: float = 0.0) -> Release:
    """One request, two approvals and the release, with a pause of mean ``think`` seconds before each step
    (people take time to decide)."""
    host = HostSession(f"host-{i}", HOSTS[i])  # the host's long-lived identity; a fresh ephemeral key per request
    request = ReleaseRequest.parse(SignedMessage.sign(host.request_payload(MODEL, "bench", f"r{i}"), people[f"r{i}"]))
    await pause(think)
    request_id = (await post(http, "/v1/custody/requests", request.signed))["request_id"]
    for approver in ("bob", "carol"):
        await pause(think)
        approval = SignedMessage.sign(new_approval(request=request, approver=approver), people[approver])
        await post(http, f"/v1/custody/requests/{request_id}/approvals", approval)
    await pause(think)
    fetch = host.fetch(request_id)
    start = time.monotonic()
    reply = await http.post(f"/v1/custody/requests/{request_id}/release", json=fetch.to_json())
    seen = time.monotonic() - start
    assert reply.status_code == 200, reply.text
    host.open_release(reply.json()).close()
    return Release(request_id, start, seen, server_time(reply))


async def pause(mean: float) -> None:
    if mean > 0:
        await asyncio.sleep(random.expovariate(1 / mean))


def new_client(url: str) -> httpx.AsyncClient:
    # Made before any clock starts: building an httpx client costs milliseconds of CPU (its TLS context).
    return httpx.AsyncClient(base_url=url, timeout=60, trust_env=False)


def loop_clients(
    url: str, people: dict[str, Signer], clients: int, seconds: float, think: float, disk: Path, once: bool = False
) -> Run:
    """``clients`` concurrent clients spread over PROCESSES processes (one event loop driving all 200 would
    add its own queueing to every measured release), with an fsync probe on ``disk`` beside them. Each runs
    flows back to back and flows begun after the ramp count; with ``once``, each runs one flow, all starting
    at the same instant."""
    keys = {name: signer.pem() for name, signer in people.items()}
    hosts = {i: HOSTS[i].pem() for i in range(clients)}
    begin = time.monotonic() + 3.0  # one start for every process (CLOCK_MONOTONIC is system-wide), once booted
    probe = start_fsync_probe(disk, begin - time.monotonic() + RAMP + seconds + 1)
    shards = [
        (url, keys, hosts, list(range(k, clients, PROCESSES)), seconds, think, begin, once) for k in range(PROCESSES)
    ]
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(client_shard, shards))
    run = Run()
    for part in parts:
        run.released += part.released
        run.counted += part.counted
    run.rate = len(run.counted) / (max(r.start + r.seen for r in run.counted) - begin - (0 if once else RAMP))
    probe_report(probe, run)
    return run


def client_shard(
    args: tuple[str, dict[str, bytes], dict[int, bytes], list[int], float, float, float, bool],
) -> Run:
    """One process's share of the clients (runs in a worker process)."""
    url, keys, hosts, indices, seconds, think, begin, once = args
    people = {name: Signer.from_pem(pem) for name, pem in keys.items()}
    HOSTS.update((i, Signer.from_pem(pem)) for i, pem in hosts.items())
    return uvloop.run(looping(url, people, indices, seconds, think, begin, once))


async def looping(
    url: str, people: dict[str, Signer], indices: list[int], seconds: float, think: float, begin: float, once: bool
) -> Run:
    run = Run()
    connections = {i: new_client(url) for i in indices}
    end = begin + RAMP + seconds
    await asyncio.sleep(max(0.0, begin - time.monotonic()))

    async def client(i: int) -> None:
        async with connections[i] as http:
            if once:
                release = await flow(http, people, i)
                run.released.append(release.request_id)
                run.counted.append(release)
                return
            await asyncio.sleep(random.uniform(0, RAMP))
            while (started := time.monotonic()) < end:
                release = await flow(http, people, i, think)
                run.released.append(release.request_id)
                if started >= begin + RAMP:
                    run.counted.append(release)

    await asyncio.gather(*(client(i) for i in indices))
    return run


async def one_flow_each(url: str, people: dict[str, Signer], clients: int, concurrency: int) -> Run:
    """One flow per client, ``concurrency`` at a time, all started together."""
    run = Run()
    gate = asyncio.Semaphore(concurrency)
    connections = [new_client(url) for _ in range(clients)]

    async def client(i: int) -> None:
        async with gate, connections[i] as http:
            release = await flow(http, people, i)
            run.released.append(release.request_id)
            run.counted.append(release)

    begin = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    run.rate = clients / (time.monotonic() - begin)
    return run


async def post(http: httpx.AsyncClient, path: str, message: SignedMessage) -> dict[str, Any]:
    reply = await http.post(path, json=message.to_json())
    assert reply.status_code < 300, f"{path}: {reply.status_code} {reply.text}"
    return dict(reply.json())


def server_time(reply: httpx.Response) -> float:
    """The server's own time for the release, from its ``Server-Timing: release;dur=<ms>`` header."""
    for metric in reply.headers.get("server-timing", "").split(","):
        name, _, rest = metric.strip().partition(";dur=")
        if name == "release":
            return float(rest) / 1e3
    return float("nan")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def percentiles(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1e3:.1f} ms, p99 {p99(values) * 1e3:.1f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the clients loop after the ramp")
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds a person takes before each step")
    parser.add_argument("--postgres", default=os.environ.get("STRONGROOM_TEST_POSTGRES_URL"))
    parser.add_argument("--trace", help="write each looping run's releases and disk stalls as JSON beside FILE")
    args = parser.parse_args()
    if args.trace:
        TRACE.append(args.trace)
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp) / "sqlite", None, args.clients, args.seconds, args.think)
    if args.postgres:
        import psycopg

        name = f"strongroom_bench_{os.getpid()}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                run(
                    Path(tmp) / "pg",
                    args.postgres.rsplit("/", 1)[0] + "/" + name,
                    args.clients,
                    args.seconds,
                    args.think,
                )
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
