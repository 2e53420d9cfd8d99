"""Run many ``strongroom`` command lines fast: import the CLI once, then fork one child per command line.

Each child is a real process running ``strongroom.cli.main.main`` exactly as the console script does, with its
own stdin (/dev/null), stdout and stderr (files), working directory and environment; only the import is shared.
Reads a JSON list of ``{"args": [...], "cwd": DIR, "env": {...}, "columns": N}`` on stdin and writes a JSON
list of ``{"code", "stdout", "stderr", "timed_out"}``. Usage: python forkrun.py [--parallel N] [--timeout S]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from typing import Any


def child(case: dict[str, Any], out_path: str, err_path: str) -> None:
    from strongroom.cli.main import main

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(case.get("cwd") or os.getcwd())
    os.environ.clear()
    os.environ.update(case["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    try:
        sys.argv = ["strongroom", *case["args"]]
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a traceback escaping main() is exactly what the contract forbids: show it
        import traceback

        traceback.print_exc()
        code = 99
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def warm_up() -> None:
    """Run a usage error and a help page once in this process, output discarded, so the lazy imports and
    caches of typer and rich are paid once rather than in every child."""
    import contextlib
    import io

    from strongroom.cli.contract import run
    from strongroom.cli.main import command

    for args in (["seal", "--bogus"], ["seal", "--help"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run(command(), args)


def main() -> None:
    parallel = int(sys.argv[sys.argv.index("--parallel") + 1]) if "--parallel" in sys.argv else 4
    timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 60.0
    cases: list[dict[str, Any]] = json.load(sys.stdin)
    try:
        from strongroom.cli.main import command
    except ImportError:  # a tree from before the error contract: children build everything themselves
        import strongroom.cli.main  # noqa: F401
    else:
        command()  # the one import and command tree every child shares
        warm_up()
    import gc

    gc.collect()
    gc.freeze()  # children do not touch (and so copy) the shared objects' pages when they collect

    results: list[dict[str, Any] | None] = [None] * len(cases)
    scratch = tempfile.mkdtemp(prefix="forkrun-")
    running: dict[int, tuple[int, float]] = {}
    pending = list(range(len(cases)))

    def finish(pid: int, status: int, timed_out: bool) -> None:
        index, _ = running.pop(pid)
        with open(f"{scratch}/{index}.out", encoding="utf-8", errors="replace") as f:
            stdout = f.read()
        with open(f"{scratch}/{index}.err", encoding="utf-8", errors="replace") as f:
            stderr = f.read()
        code = os.waitstatus_to_exitcode(status)
        results[index] = {"code": code, "stdout": stdout, "stderr": stderr, "timed_out": timed_out}

    while pending or running:
        while pending and len(running) < parallel:
            index = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(cases[index], f"{scratch}/{index}.out", f"{scratch}/{index}.err")
            running[pid] = (index, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            finish(pid, status, False)
            continue
        now = time.monotonic()
        for pid, (_, started) in list(running.items()):
            if now - started > timeout:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                finish(pid, status, True)
        time.sleep(0.005)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
