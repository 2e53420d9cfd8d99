"""Quorum release under load: concurrent clients drive request, two approvals and release over HTTP.

    python benchmarks/bench_custody.py [--clients 200] [--postgres URL]

Each client is one host acting for one requester: it submits a request, two people approve it (one a
SenL-5 custodian) and the host collects the release. Reports flows/s and the p50/p99 latency of the
release step (target p99 < 100 ms on this machine), then proves that no request was released twice and
that every release has its key.released entry on the ledger.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from strongroom.custody.admin import model_registration, person_change
from strongroom.custody.client import CustodyClient
from strongroom.custody.host import HostSession
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.policy import ModelPolicy
from strongroom.keys import LocalKeyring
from strongroom.ledger.client import LedgerClient
from strongroom.server.background import serve_process
from strongroom.signing import Signer

MODEL = "blake3:" + "5e" * 32


def run(workdir: Path, database: str | None, clients: int) -> None:
    keyring = LocalKeyring.init(workdir / "keys", passphrase="bench", scrypt_n=2**10)
    _, wrapped = keyring.generate_data_key()
    env = {**os.environ, "STRONGROOM_PASSPHRASE": "bench"}
    extra = ["--keys", str(workdir / "keys"), *(["--database", database] if database else [])]
    with serve_process(workdir / "srv", *extra, env=env) as url:
        operator = Signer.load(workdir / "srv" / "operator.key")
        admin = CustodyClient(url)
        admin.register_model(model_registration(ModelPolicy(MODEL, 3, 2), wrapped, {}, operator))
        people: dict[str, Signer] = {}
        vetted = (date.today() - timedelta(days=10)).isoformat()
        for person, tier, custodian in [("bob", 4, False), ("carol", 5, True)] + [
            (f"r{i}", 3, False) for i in range(clients)
        ]:
            people[person] = Signer.generate("ed25519")
            admin.change_person(
                person_change(
                    {
                        "change": "enrol",
                        "person": person,
                        "name": person,
                        "public_key": people[person].verifier.pem().decode(),
                        "position": "p",
                        "tier": tier,
                        "custodian": custodian,
                        "vetted_on": vetted,
                    },
                    operator,
                )
            )
        latencies: list[float] = []
        lock = threading.Lock()

        def flow(i: int) -> str:
            client = CustodyClient(url)
            host = HostSession(f"host-{i}", Signer.generate("ed25519"))
            request = SignedMessage.sign(host.request_payload(MODEL, "bench", f"r{i}"), people[f"r{i}"])
            request_id = client.submit_request(request)
            for approver in ("bob", "carol"):
                approval = new_approval(request=request, approver=approver)
                client.approve(request_id, SignedMessage.sign(approval, people[approver]))
            start = time.perf_counter()
            bundle = client.release(request_id, host.fetch(request_id))
            with lock:
                latencies.append(time.perf_counter() - start)
            host.open_release(bundle).close()
            client.close()
            return request_id

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            released = list(pool.map(flow, range(clients)))
        elapsed = time.perf_counter() - start
        loaded = sorted(latencies)
        latencies.clear()
        for i in range(min(clients, 30)):  # the same flow, one at a time: the release step's own cost
            released.append(flow(i))
        quiet = sorted(latencies)
        latencies[:] = loaded
        logged = [e.body["request_id"] for _, e in LedgerClient(url).query(type="key.released")]
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    backend = "PostgreSQL" if database else "SQLite"
    print(f"{backend}: {clients} concurrent flows in {elapsed:.2f}s ({clients / elapsed:.1f} flows/s)")
    print(
        f"  release step p50 {statistics.median(latencies) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms "
        f"(target p99 < 100 ms: {p99 * 1e3 / 100:.2f}x target)"
    )
    print(
        f"  one flow at a time: release step p50 {statistics.median(quiet) * 1e3:.1f} ms, max {quiet[-1] * 1e3:.1f} ms"
    )
    assert len(set(released)) == len(released) and sorted(logged) == sorted(released)
    print(f"  {len(released)} releases, all distinct, each with exactly one key.released entry on the ledger")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("STRONGROOM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp) / "sqlite", None, args.clients)
    if args.postgres:
        import psycopg

        name = f"strongroom_bench_{os.getpid()}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                run(Path(tmp) / "pg", args.postgres.rsplit("/", 1)[0] + "/" + name, args.clients)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
