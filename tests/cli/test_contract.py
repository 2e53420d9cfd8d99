"""The CLI's error contract, across every command the Typer app has (commands added later included).

For each command: --help renders in the usual style; a bogus option, a missing argument and a refused value
each end in one 'error:' line (and at most one 'hint:' line) with exit 2; placeholder values that the parser
accepts but the command cannot use end in exit 0 or one 'error:' line with exit 1; never a traceback.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.walk import (
    LONG_RUNNING,
    SRC,
    Result,
    bad_value,
    clean_env,
    cli_command,
    contract_problems,
    groups,
    leaves,
    params,
    required_args,
    run_many,
)


def walk_cases(scratch: Path) -> list[tuple[str, tuple[str, ...], int, dict[str, Any]]]:
    """(check, command path, expected exit, case) for every command of the app."""
    cases: list[tuple[str, tuple[str, ...], int, dict[str, Any]]] = []
    for path, command in leaves(cli_command()):
        cases.append(("help", path, 0, {"args": [*path, "--help"]}))
        cases.append(("bogus option", path, 2, {"args": [*path, "--no-such-option-at-all"]}))
        if any(p.required for p in params(command)):
            cases.append(("missing argument", path, 2, {"args": [*path]}))
        for param in params(command):
            if bad_value(param) is not None:
                cases.append(("bad value", path, 2, {"args": [*path, *required_args(command, scratch, bad=param)]}))
                break
        if path[-1] not in LONG_RUNNING:
            run_dir = scratch / ("run-" + "-".join(path))
            run_dir.mkdir()
            args = [*path, *required_args(command, scratch)]
            cases.append(("library error", path, 1, {"args": args, "cwd": str(run_dir)}))
    for path in groups(cli_command()):
        cases.append(("group alone", path, 0, {"args": [*path]}))
        cases.append(("unknown command", path, 2, {"args": [*path, "no-such-command"]}))
    return cases


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, tuple[str, ...], int, Result]]:
    scratch = tmp_path_factory.mktemp("walk")
    cases = walk_cases(scratch)
    results = run_many([case for _, _, _, case in cases], parallel=4)
    return [(check, path, code, result) for (check, path, code, _), result in zip(cases, results, strict=True)]


def test_every_command_keeps_the_contract(walked: list[tuple[str, tuple[str, ...], int, Result]]) -> None:
    broken = []
    for check, path, code, result in walked:
        name = " ".join(("strongroom", *path))
        if check in ("help", "group alone"):
            problems = (
                [] if result.code == 0 and not result.stderr.strip() else [f"exit {result.code}: {result.stderr}"]
            )
            if f"Usage: {name} " not in " ".join(result.stdout.split()):
                problems.append("no usage line naming the command")
        elif check == "library error":
            # the command ran with values it cannot use: done (0), or one error line (1); nothing else
            problems = [] if result.code == 0 and "Traceback" not in result.stderr else contract_problems(result, 1)
        else:
            problems = contract_problems(result, code)
            if not problems and not result.lines[0].startswith(f"error: {name}: "):
                problems.append(f"the error does not name the command: {result.lines[0]!r}")
        broken += [f"{name} ({check}): {p}" for p in problems]
    assert not broken, "\n".join(broken)


def test_the_walk_covers_every_check(walked: list[tuple[str, tuple[str, ...], int, Result]]) -> None:
    """The walk is not vacuous: all checks ran, over every command, and bad values reached typed options."""
    commands = {path for check, path, _, _ in walked if check != "group alone"}
    assert len(commands) >= 55
    # the commands merged with strongroom.geo and strongroom.egress are walked like the rest
    assert {("geo", "verify"), ("geo", "landmark", "enrol"), ("egress", "status"), ("egress", "plan")} <= commands
    assert {("egress", "gateway", "serve"), ("egress", "inference", "serve"), ("init",)} <= commands
    by_check: dict[str, int] = {}
    for check, *_ in walked:
        by_check[check] = by_check.get(check, 0) + 1
    assert by_check["help"] == by_check["bogus option"] >= 45
    assert by_check["missing argument"] >= 35 and by_check["bad value"] >= 15 and by_check["library error"] >= 40


def test_usage_errors_say_what_and_how(walked: list[tuple[str, tuple[str, ...], int, Result]]) -> None:
    results = {(check, path): result for check, path, _, result in walked}
    seal_bogus = results[("bogus option", ("seal",))]
    assert seal_bogus.lines == [
        "error: strongroom seal: no such option: --no-such-option-at-all",
        "hint: usage: strongroom seal [OPTIONS] SRC DST; 'strongroom seal --help' explains every option",
    ]
    assert results[("missing argument", ("seal",))].lines[0] == "error: strongroom seal: missing argument SRC"
    enrol = results[("missing argument", ("people", "enrol"))].lines[0]
    assert enrol == "error: strongroom people enrol: missing argument PERSON"
    assert results[("unknown command", ())].lines[0] == "error: strongroom: no such command 'no-such-command'"


def test_help_renders_flags_and_arguments_in_the_usual_style(
    walked: list[tuple[str, tuple[str, ...], int, Result]],
) -> None:
    for check, path, _, result in walked:
        if check != "help":
            continue
        assert "<bool>" not in result.stdout, path
        usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<" not in usage, usage
    seal = next(r for c, p, _, r in walked if c == "help" and p == ("seal",))
    assert "Usage: strongroom seal [OPTIONS] SRC DST" in seal.stdout
    assert " --json " in seal.stdout and "--segment-size        INTEGER" in seal.stdout


def test_the_named_newcomer_cases() -> None:
    """The command lines from the issue, one by one."""
    cases = [
        (["seal", "--bogus"], 2, "error: strongroom seal: no such option: --bogus"),
        (["seal", "model-dir"], 2, "error: strongroom seal: missing argument DST"),
        (["no-such-command"], 2, "error: strongroom: no such command 'no-such-command'"),
        (["people", "enrol", "p", "--tier", "9"], 2, "error: strongroom people enrol: invalid value for '--tier'"),
        (
            ["ledger", "verify", "http://127.0.0.1:9", "--state", "s", "--index", "abc"],
            2,
            "invalid value for '--index'",
        ),
        (["inspect", "no-such-dir"], 1, "error: no-such-dir: no such file or directory"),
    ]
    results = run_many([{"args": args} for args, _, _ in cases])
    for (args, code, text), result in zip(cases, results, strict=True):
        assert not contract_problems(result, code), (args, result)
        assert text in result.lines[0], (args, result.lines)
    bare = run_many([{"args": []}])[0]
    assert bare.code == 0 and "Usage: strongroom [OPTIONS] COMMAND" in bare.stdout and not bare.stderr


def test_debug_shows_the_traceback_and_still_one_error_line() -> None:
    plain, debug, env_debug = run_many(
        [
            {"args": ["seal", "--bogus"]},
            {"args": ["--debug", "seal", "--bogus"]},
            {"args": ["inspect", "no-such-dir"], "env": clean_env(STRONGROOM_DEBUG="1")},
        ]
    )
    assert "Traceback" not in plain.stderr
    assert debug.code == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.lines[-2].startswith("error: strongroom seal: no such option")
    assert env_debug.code == 1 and "Traceback" in env_debug.stderr and env_debug.lines[-1].startswith("error: ")


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path: Path) -> None:
    """A command waiting on a server that never answers, interrupted as Ctrl-C does (SIGINT)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections in the kernel, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "strongroom.cli.main", "ledger", "show", url],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)  # imports done, the request sent and waiting
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted"]
    assert "Traceback" not in out + err


def test_a_bug_is_one_line_with_a_pointer_to_debug(tmp_path: Path) -> None:
    """An exception the library never meant to raise still ends in one line (the contract's last resort)."""
    script = (
        "import sys, typer\n"
        "from strongroom.cli import contract\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def boom() -> None:\n"
        "    raise KeyError('surprise')\n"
        "sys.exit(contract.run(typer.main.get_command(app), sys.argv[1:]))\n"
    )
    env = {**clean_env(), "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: unexpected KeyError: 'surprise'",
        "hint: this is a bug in Strongroom; 'strongroom --debug ...' shows where it happened",
    ]


def test_shell_completion_completes_commands_and_options() -> None:
    env = clean_env(_STRONGROOM_COMPLETE="complete_bash", COMP_WORDS="strongroom se", COMP_CWORD="1")
    commands = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert commands.returncode == 0 and commands.stdout.split() == ["seal", "serve"]
    env.update(COMP_WORDS="strongroom seal --ke", COMP_CWORD="2")
    options = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert {"--keys", "--kek-file", "--key-provider", "--key-config"} <= set(options.stdout.split())
    script = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "--show-completion", "bash"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and "_STRONGROOM_COMPLETE=complete_bash" in script.stdout


def test_version() -> None:
    result = run_many([{"args": ["--version"]}])[0]
    assert result.code == 0 and result.stdout.strip() == "strongroom 0.1.0"


def test_json_errors_stay_off_stdout(tmp_path: Path) -> None:
    """With --json, a failure leaves stdout empty (machines read stdout) and says why on stderr."""
    result = run_many([{"args": ["inspect", str(tmp_path / "nothing"), "--json"]}])[0]
    assert result.code == 1 and result.stdout == "" and result.lines[0].startswith("error: ")
