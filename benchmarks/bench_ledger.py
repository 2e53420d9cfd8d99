"""Ledger throughput and proof latency, measured in one run.

    python benchmarks/bench_ledger.py [--entries 20000] [--postgres URL] [--hostile-seconds 10] [--releases]

Reports sustained appends/s in-process (SQLite, and PostgreSQL when a URL is given or
STRONGROOM_TEST_POSTGRES_URL is set) and over HTTP with concurrent clients, inclusion and consistency
proof time at 10^6 entries, and tile requests/s. Targets on this 2-core machine: >= 5,000 appends/s
in-process on SQLite, >= 1,000/s over HTTP, proofs < 1 ms at 10^6 entries.

The hostile scenario (issue 11): one client posts an 8 MiB bundle of entries self-signed with a P-521 key
nobody allowed, again and again, while another reads ``/checkpoint`` every 20 ms; latency is reported with
and without the attacker, in the same run. With ``--releases`` (the current custody API only) quorum
releases run one at a time over HTTP (as benchmarks/bench_custody.py stands custody up) with and without
the attacker, and the release step's p50/p99 are compared. ``--only-hostile`` skips everything else;
``--skip-hostile`` skips it (the script also runs against older code, for same-session comparisons).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from strongroom.ledger import merkle
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.ledger.log import Ledger, Receipt
from strongroom.ledger.tiles import bundle
from strongroom.ledger.tree import HashTree
from strongroom.server.background import serve_process
from strongroom.signing import Signer

# The hardening branch's serve needs a passphrase for its keys (ignored by servers that do not): one for all.
BENCH_SERVER_PASSPHRASE = "bench walnut harbour violet"
SERVE_ENV = {**os.environ, "STRONGROOM_SERVER_PASSPHRASE": BENCH_SERVER_PASSPHRASE}


def entries(signer: Signer, count: int) -> list[bytes]:
    body = {"model_id": "blake3:" + "ab" * 32, "suite": "bench", "results": {"score": 1}, "evaluator": "bench"}
    return [make_entry("model.evaluated", {**body, "suite": f"bench-{i}"}, signer) for i in range(count)]


def in_process(database: str | None, raws: list[bytes], workdir: Path, blocking: bool) -> float:
    """Appends with signature and schema checks included, from threads sharing one Ledger.

    ``blocking``: 32 threads each call ``append`` and wait for their entry's commit (one entry in
    flight per thread). Otherwise 4 threads verify and ``submit`` without waiting, as an appender
    service would, and the group commit sees full batches.
    """
    ledger = Ledger.open(workdir, database)
    threads = 32 if blocking else 4
    chunks = [raws[i::threads] for i in range(threads)]

    def work(chunk: list[bytes]) -> list[Future[Receipt]]:
        if blocking:
            for raw in chunk:
                ledger.append(raw)
            return []
        return [ledger.submit(parse_entry(raw)) for raw in chunk]

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        futures = [f for batch in pool.map(work, chunks) for f in batch]
    for future in futures:
        future.result()
    elapsed = time.perf_counter() - start
    ledger.close()
    return len(raws) / elapsed


def over_http(count: int, workdir: Path, clients: int) -> tuple[float, float, float]:
    """'strongroom serve' in its own process; ``clients`` threads append over HTTP one entry per request,
    then 8 clients append 64-entry bundles; finally one client reads full tiles."""
    operator = Signer.generate("ed25519")  # an appender allowed model.evaluated (DATA/appenders/bench.pub)
    workdir.mkdir(mode=0o700, parents=True)
    (workdir / "appenders").mkdir()
    (workdir / "appenders" / "bench.pub").write_bytes(operator.verifier.pem())
    with serve_process(workdir, env=SERVE_ENV) as url:
        raws = entries(operator, count)
        chunks = [raws[i::clients] for i in range(clients)]

        def client(chunk: list[bytes]) -> None:
            with httpx.Client(base_url=url) as http:
                for raw in chunk:
                    http.post("/add", content=raw).raise_for_status()

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, chunks))
        appends = len(raws) / (time.perf_counter() - start)

        more = entries(operator, count * 3)
        bundles = [more[i : i + 64] for i in range(0, len(more), 64)]

        def bundler(batch: list[list[bytes]]) -> None:
            ledger_client = LedgerClient(url)
            for items in batch:
                ledger_client.append_bundle(items)
            ledger_client.close()

        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(bundler, [bundles[i::8] for i in range(8)]))
        bundled = len(more) / (time.perf_counter() - start)
        with httpx.Client(base_url=url) as http:
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < 3:
                http.get("/tile/0/000").raise_for_status()
                done += 1
            tiles = done / (time.perf_counter() - start)
    return appends, bundled, tiles


async def _raw_clients(url: str, chunks: list[list[bytes]]) -> None:
    """Keep-alive HTTP/1.1 clients on one event loop, as little client CPU as a client can cost."""
    import asyncio

    host, port = url.removeprefix("http://").split(":")

    async def one(chunk: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for raw in chunk:
                writer.write(
                    b"POST /add HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s" % (host.encode(), len(raw), raw)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 201"):
                    raise RuntimeError(head.decode(errors="replace").splitlines()[0])
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(one(chunk) for chunk in chunks))


def one_entry_rate(
    count: int, workdir: Path, clients: int, framework: bool, raw_clients: bool = False
) -> tuple[float, float, float]:
    """One entry per request from ``clients`` threads; returns (appends/s, server and client CPU seconds
    per append).
    ``framework``: serve ``/add`` through the FastAPI route instead of the lean ASGI path. ``raw_clients``:
    minimal keep-alive clients on one event loop instead of httpx threads (less client CPU on the shared
    cores; not what ``LedgerClient`` costs)."""
    operator = Signer.generate("ed25519")
    workdir.mkdir(mode=0o700, parents=True)
    (workdir / "appenders").mkdir()
    (workdir / "appenders" / "bench.pub").write_bytes(operator.verifier.pem())
    env = {**SERVE_ENV, "STRONGROOM_FRAMEWORK_ADD": "1" if framework else "0"}
    raws = entries(operator, count)
    chunks = [raws[i::clients] for i in range(clients)]
    with serve_process(workdir, env=env) as url:

        def client(chunk: list[bytes]) -> None:
            with httpx.Client(base_url=url) as http:
                for raw in chunk:
                    http.post("/add", content=raw).raise_for_status()

        cpu, mine = server_cpu_of(url), time.process_time()
        start = time.perf_counter()
        if raw_clients:
            import asyncio

            asyncio.run(_raw_clients(url, chunks))
        else:
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(client, chunks))
        elapsed = time.perf_counter() - start
        used, client_used = server_cpu_of(url) - cpu, time.process_time() - mine
    return count / elapsed, used / count, client_used / count


def server_cpu_of(url: str) -> float:
    """CPU seconds (user + system) used so far by the ``strongroom serve`` process on ``url``'s port."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"serve" in argv and b"--port" in argv and argv[argv.index(b"--port") + 1] == port.encode():
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def compare_add(rounds: int, count: int, clients: int, raw_clients: bool = False) -> None:
    """The lean ``/add`` against the FastAPI route, alternating in the same run."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    costs: dict[bool, list[float]] = {True: [], False: []}
    client_costs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for framework in (r % 2 == 0, r % 2 != 0):
                rate, cost, client = one_entry_rate(
                    count, Path(tmp) / f"{r}-{framework}", clients, framework, raw_clients
                )
                rates[framework].append(rate)
                costs[framework].append(cost)
                client_costs.append(client)
                label = "FastAPI route" if framework else "lean ASGI    "
                print(
                    f"  round {r + 1} {label}: {rate:7,.0f} appends/s, CPU per append: server {cost * 1e3:.3f} ms,"
                    f" clients {client * 1e3:.3f} ms, loadavg {os.getloadavg()[0]:.2f}"
                )
    ratio = [a / b for a, b in zip(rates[False], rates[True], strict=True)]
    kind = "raw asyncio" if raw_clients else "httpx"
    print(
        f"one entry per request, {clients} {kind} clients, {count} entries a round, "
        f"loadavg {os.getloadavg()[0]:.2f}: lean "
        f"median {statistics.median(rates[False]):,.0f}/s vs route {statistics.median(rates[True]):,.0f}/s "
        f"({min(ratio):.2f}-{max(ratio):.2f}x per round); server CPU/append "
        f"{statistics.median(costs[False]) * 1e3:.3f} vs {statistics.median(costs[True]) * 1e3:.3f} ms"
    )
    per_append = statistics.median(costs[False]) + statistics.median(client_costs)
    print(
        f"bound on {os.cpu_count()} CPUs shared with the clients: {os.cpu_count() or 1} / "
        f"{per_append * 1e3:.3f} ms = {(os.cpu_count() or 1) / per_append:,.0f} appends/s at best"
    )


def hostile_bundle(size: int = 8 << 20) -> bytes:
    """The review's attack: ``size`` bytes of model.evaluated entries signed by a fresh P-521 key (64 distinct
    entries repeated; a server that verifies before it checks the signer verifies every copy)."""
    stranger = Signer.generate("ecdsa-p521")
    one = bundle(entries(stranger, 64))
    return one * (size // len(one))


def attack(url: str, stop: Any, refused: Any) -> None:
    """The hostile client: posts the 8 MiB bundle to /add-bundle back to back until ``stop`` is set, counting
    refusals. It runs in its own process at the lowest CPU priority: on this 2-core machine it stands for a
    remote attacker, whose own CPU (mostly copying 8 MiB into a socket, hundreds of times a second) is not
    the server's; the server's CPU per refusal is reported beside it."""
    os.nice(19)
    data = hostile_bundle()
    with httpx.Client(base_url=url, timeout=120) as http:
        while not stop.is_set():
            with suppress(httpx.HTTPError):
                http.post("/add-bundle", content=data)
            with refused.get_lock():
                refused.value += 1


@contextmanager
def attacker(url: str, on: bool) -> Iterator[Any]:
    """While the block runs (if ``on``), a hostile client in its own process; yields its refusal counter."""
    context = multiprocessing.get_context("spawn")
    stop, refused = context.Event(), context.Value("i", 0)
    process = context.Process(target=attack, args=(url, stop, refused), daemon=True)
    if on:
        process.start()
        while refused.value == 0 and process.is_alive():
            time.sleep(0.05)  # it has made its bundle and had one refused
        refused.value = 0
    try:
        yield refused
    finally:
        stop.set()
        if on:
            process.join(timeout=120)


def server_cpu() -> float:
    """CPU seconds used so far by this process's children (the ``strongroom serve`` process)."""
    total = 0.0
    for task in os.listdir("/proc/self/task"):
        for child in Path(f"/proc/self/task/{task}/children").read_text().split():
            with suppress(OSError):
                if b"strongroom.cli.main" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    continue  # the attacker's process, or multiprocessing's helper
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], ordered[-1]


def checkpoint_under_attack(workdir: Path, seconds: float) -> None:
    """``/checkpoint`` latency, one read every 20 ms, without and then with the hostile client."""
    workdir.mkdir(mode=0o700, parents=True)
    with serve_process(workdir, env=SERVE_ENV) as url, httpx.Client(base_url=url, timeout=300) as http:
        results = {}
        for on in (False, True):
            with attacker(url, on) as refused:
                cpu = server_cpu()
                samples = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    start = time.perf_counter()
                    http.get("/checkpoint").raise_for_status()
                    samples.append(time.perf_counter() - start)
                    time.sleep(0.02)
                cpu = server_cpu() - cpu
            results[on] = percentiles(samples)
            rate = f"; {refused.value / seconds:.0f} bundles refused per second" if on else ""
            if on and refused.value:
                rate += f", {cpu / refused.value * 1e3:.2f} ms of server CPU each"
            rate += f"; server CPU {cpu / seconds * 100:.0f}% of a core"
            p50, p99, worst = results[on]
            print(
                f"/checkpoint {'with' if on else 'without'} the 8 MiB P-521 bundle client: p50 {p50 * 1e3:.1f} ms, "
                f"p99 {p99 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms (n={len(samples)}){rate}"
            )
        print(f"  p99 with / without: {results[True][1] / results[False][1]:.2f}x")


def releases_under_attack(workdir: Path, seconds: float) -> None:
    """Quorum releases one at a time over HTTP (request, two approvals, release), without and then with the
    hostile client; custody is stood up as in benchmarks/bench_custody.py."""
    import uvloop

    import bench_custody as custody_bench
    from strongroom.custody import admin
    from strongroom.custody.client import CustodyClient
    from strongroom.custody.policy import ModelPolicy
    from strongroom.keys import LocalKeyring
    from strongroom.keys.provider import KeyBinding

    hosts = 4
    keyring = LocalKeyring.init(workdir / "keys", passphrase=BENCH_SERVER_PASSPHRASE, scrypt_n=2**10)
    _, wrapped = keyring.generate_data_key(KeyBinding("5e" * 16, custody_bench.MODEL))
    officers = [Signer.generate("ed25519") for _ in range(2)]
    (workdir / "srv").mkdir(mode=0o700, parents=True)
    (workdir / "srv" / "officers").mkdir()
    for n, officer in enumerate(officers):
        (workdir / "srv" / "officers" / f"officer{n}.pub").write_bytes(officer.verifier.pem())
    env = {**SERVE_ENV, "STRONGROOM_PASSPHRASE": BENCH_SERVER_PASSPHRASE}
    with serve_process(workdir / "srv", "--keys", str(workdir / "keys"), env=env) as url:
        client = CustodyClient(url)
        client.admin(admin.propose(admin.register_model(ModelPolicy(custody_bench.MODEL, 3, 2), wrapped), officers))
        people = custody_bench.enrol(client, officers, hosts)
        custody_bench.HOSTS.update((i, Signer.generate("ed25519")) for i in range(hosts))
        for i in range(hosts):
            pem = custody_bench.HOSTS[i].verifier.pem().decode()
            client.admin(
                admin.propose(admin.enrol_host(f"host-{i}", name="h", site="b", owner="b", public_key=pem), officers)
            )
        client.close()

        async def flows(until: float) -> list[float]:
            seen = []
            async with custody_bench.new_client(url) as http:
                i = 0
                while time.monotonic() < until:
                    release = await custody_bench.flow(http, people, i % hosts)
                    seen.append(release.seen)
                    i += 1
            return seen

        results = {}
        for on in (False, True):
            with attacker(url, on) as refused:
                seen = uvloop.run(flows(time.monotonic() + seconds))
            results[on] = percentiles(seen)
            p50, p99, worst = results[on]
            rate = f"; {refused.value / seconds:.0f} bundles refused per second" if on else ""
            print(
                f"release step {'with' if on else 'without'} the 8 MiB P-521 bundle client: p50 {p50 * 1e3:.1f} ms, "
                f"p99 {p99 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms (n={len(seen)}){rate}"
            )
        added = (results[True][1] - results[False][1]) * 1e3
        print(f"  p99 added by the attacker: {added:+.1f} ms (allowed: 20 ms)")


def timed(label: str, function: Callable[[], None]) -> None:
    start = time.perf_counter()
    function()
    print(f"  ({label}: {time.perf_counter() - start:.0f} s)")


def proofs_at_a_million() -> tuple[float, float, float]:
    tree = HashTree()
    start = time.perf_counter()
    for i in range(1_000_000):
        tree.append(merkle.leaf_hash(i.to_bytes(8, "big")))
    build = time.perf_counter() - start
    size = tree.size
    samples_incl, samples_cons = [], []
    for i in range(0, size, size // 500):
        t = time.perf_counter()
        tree.inclusion_proof(i, size)
        samples_incl.append(time.perf_counter() - t)
        t = time.perf_counter()
        tree.consistency_proof(max(1, i), size)
        samples_cons.append(time.perf_counter() - t)
    return build, statistics.median(samples_incl), statistics.median(samples_cons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--http-entries", type=int, default=3_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--postgres", default=os.environ.get("STRONGROOM_TEST_POSTGRES_URL"))
    parser.add_argument("--hostile-seconds", type=float, default=10.0)
    parser.add_argument("--releases", action="store_true", help="also time quorum releases under the attack")
    parser.add_argument("--only-hostile", action="store_true")
    parser.add_argument("--skip-hostile", action="store_true")
    parser.add_argument("--only-http", action="store_true", help="only the HTTP append rates")
    parser.add_argument("--compare-add", type=int, default=0, metavar="ROUNDS", help="lean /add vs FastAPI route")
    parser.add_argument("--raw-clients", action="store_true", help="--compare-add with minimal asyncio clients")
    args = parser.parse_args()
    if args.compare_add:
        compare_add(args.compare_add, args.http_entries, args.clients, args.raw_clients)
        return
    if not args.skip_hostile:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint_under_attack(Path(tmp) / "hostile", args.hostile_seconds)
            if args.releases:
                releases_under_attack(Path(tmp) / "releases", args.hostile_seconds)
        if args.only_hostile:
            return
    if args.only_http:
        with tempfile.TemporaryDirectory() as tmp:
            http_rate, bundled_rate, _ = over_http(args.http_entries, Path(tmp) / "http", args.clients)
        print(f"HTTP appends, {args.clients} clients: {http_rate:,.0f}/s; 64-entry bundles: {bundled_rate:,.0f}/s")
        return
    signer = Signer.generate("ed25519")
    raws = entries(signer, args.entries)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = in_process(None, raws, Path(tmp) / "sqlite", blocking=False)
        print(
            f"in-process appends, SQLite      : {sqlite_rate:9,.0f}/s  (target >= 5,000/s; "
            f"{sqlite_rate / 5000:.2f}x target; 4 verifying threads, pipelined)"
        )
        blocking_rate = in_process(None, raws, Path(tmp) / "sqlite-blocking", blocking=True)
        print(f"  one entry in flight per thread: {blocking_rate:9,.0f}/s  (32 threads)")
        if args.postgres:
            import psycopg

            name = f"strongroom_bench_{os.getpid()}"
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            try:
                url = args.postgres.rsplit("/", 1)[0] + "/" + name
                pg_rate = in_process(url, raws, Path(tmp) / "pg", blocking=False)
                print(f"in-process appends, PostgreSQL  : {pg_rate:9,.0f}/s  ({pg_rate / sqlite_rate:.2f}x SQLite)")
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        http_rate, bundled_rate, tiles = over_http(args.http_entries, Path(tmp) / "http", args.clients)
        print(
            f"HTTP appends, {args.clients} clients, SQLite: {http_rate:9,.0f}/s  (target >= 1,000/s; "
            f"{http_rate / 1000:.2f}x target)"
        )
        print(
            f"HTTP appends, 64-entry bundles  : {bundled_rate:9,.0f}/s  ({bundled_rate / 1000:.2f}x target; 8 clients)"
        )
        print(f"full tile reads over HTTP       : {tiles:9,.0f}/s")
    build, incl, cons = proofs_at_a_million()
    print(f"hash tree of 10^6 leaves built in {build:.2f}s")
    print(f"inclusion proof at 10^6 (median): {incl * 1e3:9.3f} ms  (target < 1 ms)")
    print(f"consistency proof at 10^6       : {cons * 1e3:9.3f} ms  (target < 1 ms)")


if __name__ == "__main__":
    main()
