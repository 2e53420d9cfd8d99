"""The disk's own durable-write latency, as a reference: small appends, each fsynced, in a loop.

    python benchmarks/fsync_probe.py DIR SECONDS

Prints one JSON object: how many fsyncs ran, their p50/p99/max in ms, and every stall (an fsync that
took over 20 ms) as ``[start, end]`` on the monotonic clock, so a benchmark running beside it can tell
which of its own operations overlapped a stall of the disk itself. Writes one file in DIR and removes it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

STALL = 0.020


def probe(directory: str, seconds: float) -> dict[str, object]:
    handle, path = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    durations: list[float] = []
    stalls: list[list[float]] = []
    try:
        end = time.monotonic() + seconds
        while (start := time.monotonic()) < end:
            os.write(handle, b"\0" * 512)
            os.fsync(handle)
            took = time.monotonic() - start
            durations.append(took)
            if took > STALL:
                stalls.append([start, start + took])
            time.sleep(0.002)
    finally:
        os.close(handle)
        os.unlink(path)
    durations.sort()
    return {
        "fsyncs": len(durations),
        "p50_ms": durations[len(durations) // 2] * 1e3,
        "p99_ms": durations[int(0.99 * len(durations))] * 1e3,
        "max_ms": durations[-1] * 1e3,
        "stalls": stalls,
    }


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], float(sys.argv[2]))))
