"""Interpreter settings for a long-running server process, where key releases must not wait on the GIL.

- ``gc.freeze`` after start: the objects built at start (modules, routes, the ledger's tree) live as long
  as the process, and a full collection no longer walks them (here a full pass over them took 40-95 ms
  with every thread stopped). A larger first-generation threshold makes young collections rarer: with
  the default of 700, collections took ~8% of the server's CPU under load.
- A short switch interval. A release gives up the interpreter lock at every database call and lock wait
  (about twenty times) and must wait to get it back each time; while the event loop is busy, each wait
  lasts up to the switch interval. With one busy thread beside it, a release took 120 ms at the default
  5 ms interval and 8 ms at 0.2 ms (benchmarks/bench_custody.py, one flow at a time: ~4 ms).
"""

from __future__ import annotations

import gc
import sys

YOUNG_THRESHOLD = 10_000
SWITCH_INTERVAL = 0.0002  # seconds


def tune_for_serving() -> None:
    """Collect once, freeze what survives, make young collections rarer, shorten the switch interval."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    sys.setswitchinterval(SWITCH_INTERVAL)
