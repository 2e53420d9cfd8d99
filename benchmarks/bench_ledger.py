"""Ledger throughput and proof latency, measured in one run.

    python benchmarks/bench_ledger.py [--entries 20000] [--postgres URL]

Reports sustained appends/s in-process (SQLite, and PostgreSQL when a URL is given or
STRONGROOM_TEST_POSTGRES_URL is set) and over HTTP with concurrent clients, inclusion and consistency
proof time at 10^6 entries, and tile requests/s. Targets on this 2-core machine: >= 5,000 appends/s
in-process on SQLite, >= 1,000/s over HTTP, proofs < 1 ms at 10^6 entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from strongroom.ledger import merkle
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.ledger.log import Ledger, Receipt
from strongroom.ledger.tree import HashTree
from strongroom.server.background import serve_process
from strongroom.signing import Signer

BENCH_SERVER_PASSPHRASE = "bench walnut harbour violet"


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
    env = {**os.environ, "STRONGROOM_SERVER_PASSPHRASE": BENCH_SERVER_PASSPHRASE}
    operator = Signer.generate("ed25519")  # an appender allowed model.evaluated (DATA/appenders/bench.pub)
    workdir.chmod(0o700)
    (workdir / "appenders").mkdir(exist_ok=True)
    (workdir / "appenders" / "bench.pub").write_bytes(operator.verifier.pem())
    with serve_process(workdir, env=env) as url:
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
    args = parser.parse_args()
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
