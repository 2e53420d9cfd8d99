"""Helpers for tests that walk every command of the CLI: the command tree from the Typer app itself (so a
command added later is walked too), placeholder and bad values for each parameter, and a fast runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

SRC = os.environ.get("STRONGROOM_TEST_CLI_SRC") or str(Path(__file__).parents[2] / "src")
FORKRUN = str(Path(__file__).with_name("forkrun.py"))
# Commands that, given valid-looking values, run until stopped (servers) or for a long while (the demo):
# their library-error run is left out; every other check still applies to them.
LONG_RUNNING = {"serve", "demo"}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every runnable command under ``command`` with its path of names."""
    subs = getattr(command, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from leaves(sub, (*path, name))
    else:
        yield path, command


def groups(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subs = getattr(command, "commands", None)
    if subs:
        yield path
        for name, sub in sorted(subs.items()):
            yield from groups(sub, (*path, name))


def cli_command() -> Any:
    """The click command tree exactly as the Typer app builds it."""
    import typer

    from strongroom.cli.main import app

    return typer.main.get_command(app)


def _annotation(param: Any) -> Any:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return annotation


def _choices(param: Any) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "is_choice", False):
        return [str(getattr(c, "value", c)) for c in descriptor.choices or ()]
    return [str(c) for c in getattr(getattr(param, "type", None), "choices", None) or ()]


def filler(param: Any, scratch: Path) -> str:
    """A value the parser accepts for ``param`` (paths that do not exist)."""
    choices = _choices(param)
    if choices:
        return choices[0]
    kind = _annotation(param)
    if kind in (int, float):
        low = getattr(param, "min", None)
        return str(low if low is not None else 1)
    if kind is Path:
        return str(scratch / f"missing-{param.name}")
    return "x"


def bad_value(param: Any) -> str | None:
    """A value the parser must refuse for ``param``, if its type refuses anything."""
    if _choices(param):
        return "not-a-choice"
    if _annotation(param) in (int, float):
        return "not-a-number"
    return None


def is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


def params(command: Any) -> list[Any]:
    return [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]


def required_args(command: Any, scratch: Path, bad: Any = None) -> list[str]:
    """Arguments and required options with placeholder values; ``bad`` (a param) gets a refused value."""
    positional: list[str] = []
    options: list[str] = []
    for param in params(command):
        value = bad_value(param) if param is bad else filler(param, scratch)
        assert value is not None
        if param.param_type_name == "argument":
            if param.required or param is bad:
                positional.append(value)
        elif (param.required or param is bad) and not is_flag(param):
            options += [param.opts[0], value]
    return [*positional, *options]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a newcomer's shell has: no STRONGROOM_* secrets or settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "_STRONGROOM"))}
    env.update({"COLUMNS": "100", "PYTHONPATH": SRC, "NO_COLOR": "1"})
    env.update(extra)
    return env


def run_many(
    cases: list[dict[str, Any]], python: str = sys.executable, parallel: int = 4, timeout: float = 60.0
) -> list[Result]:
    """Run each case (``args``, optional ``cwd``, ``env``) in its own forked ``strongroom`` process."""
    for case in cases:
        case.setdefault("env", clean_env())
    reply = subprocess.run(
        [python, FORKRUN, "--parallel", str(parallel), "--timeout", str(timeout)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=cases[0]["env"] if cases else clean_env(),
        timeout=timeout * len(cases) / parallel + 120,
    )
    assert reply.returncode == 0, reply.stderr
    return [Result(**r) for r in json.loads(reply.stdout)]


def contract_problems(result: Result, code: int) -> list[str]:
    """How ``result`` breaks the error contract for an expected exit status ``code`` (empty: it keeps it)."""
    problems = []
    if result.timed_out:
        return ["timed out"]
    if result.code != code:
        problems.append(f"exit {result.code}, wanted {code}")
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        problems.append("printed a traceback")
    lines = result.lines
    if not 1 <= len(lines) <= 2 or not lines[0].startswith("error: "):
        problems.append(f"stderr is not one 'error:' line (and a hint): {lines!r}")
    elif len(lines) == 2 and not lines[1].startswith("hint: "):
        problems.append(f"second stderr line is not a hint: {lines[1]!r}")
    return problems
