"""The smaller things a newcomer met (issue 13), one test each: the demo's work directory, progress bars that
start only after validation, no stray blank line before an error, 'not a safetensors file', an ls with
nothing to list, and 'strongroom init' being safe to run again and refusing what it cannot do.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.cli.test_no_extras import tiny_model
from tests.cli.walk import SRC, clean_env, contract_problems, run_many
from tests.custody.conftest import PASSPHRASE as SERVER_PASSPHRASE

KEY_PASSPHRASE = "cli passphrase saffron kettle"


def on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stdout on a pseudo-terminal (as at a shell); returns (exit, terminal output, stderr)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "100"},
    )
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.stderr is not None
    err = process.stderr.read().decode()
    return process.wait(timeout=120), seen.decode(errors="replace"), err


def test_seal_refuses_an_existing_destination_before_drawing_a_bar(tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    env = clean_env(STRONGROOM_PASSPHRASE=KEY_PASSPHRASE)
    (init,) = run_many([{"args": ["keys", "init", "keys"], "cwd": str(tmp_path), "env": env}])
    assert init.code == 0, init.stderr
    code, screen, err = on_a_terminal(["seal", str(model), "sealed", "--keys", "keys"], tmp_path, env)
    assert code == 0 and "sealing" in screen, "on a terminal, a seal that runs draws its progress bar"
    code, screen, err = on_a_terminal(["seal", str(model), "sealed", "--keys", "keys"], tmp_path, env)
    assert code == 1 and err.strip().splitlines() == ["error: sealed: output already exists; choose a new path"], err
    assert "sealing" not in screen and screen.strip() == "", "refused before any bar was drawn"


def test_failures_leave_stdout_empty(tmp_path: Path) -> None:
    """manifest and verify printed a blank line (a stopped progress display) before their error."""
    (tmp_path / "signer.pub").write_text("not a key")
    results = run_many(
        [
            {"args": ["manifest", str(tmp_path / "missing")]},
            {"args": ["verify", str(tmp_path / "missing"), "--signer", str(tmp_path / "signer.pub")]},
            {"args": ["manifest", str(tmp_path / "missing"), "--json"]},
        ]
    )
    for result in results:
        assert not contract_problems(result, 1), result
        assert result.stdout == "", repr(result.stdout)


def test_garbage_safetensors_is_called_what_it_is(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"<html>this is a login page, not weights</html>")
    (result,) = run_many([{"args": ["manifest", str(model)]}])
    assert not contract_problems(result, 1)
    assert "model.safetensors: not a safetensors file" in result.lines[0], result.lines


def test_ls_says_when_there_is_nothing_to_list(tmp_path: Path) -> None:
    model = tmp_path / "config-only"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = clean_env(STRONGROOM_PASSPHRASE=KEY_PASSPHRASE)
    steps = [
        ["keys", "init", "keys"],
        ["seal", str(model), "sealed", "--keys", "keys"],
        ["ls", "sealed", "--keys", "keys"],
    ]
    for step in steps:
        (result,) = run_many([{"args": step, "cwd": str(tmp_path), "env": env}])
        assert result.code == 0, result.stderr
    assert (
        result.stdout.strip()
        == "sealed: no safetensors file, so no tensors to list ('strongroom inspect' lists its files)"
    )


def test_demo_says_where_it_works_and_cleans_up(tmp_path: Path) -> None:
    """The demo used to leave ~90 MB in /tmp silently: it now names its directory and removes it, unless --keep."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(TMPDIR=str(temp))
    removed, kept = run_many(
        [{"args": ["demo"], "env": env}, {"args": ["demo", "--keep"], "env": env}], parallel=2, timeout=300
    )
    assert removed.code == 0 and kept.code == 0, removed.stderr + kept.stderr
    left = list(temp.glob("strongroom-demo-*"))  # (torch and the runner keep their own files there too)
    assert len(left) == 1 and left[0].is_dir() and any(left[0].iterdir()), left
    assert f"removed the work directory {temp}" in removed.stdout and "--keep keeps it" in removed.stdout
    assert f"work directory kept: {left[0]}" in " ".join(kept.stdout.split())


def _init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "STRONGROOM_SERVER_PASSPHRASE": SERVER_PASSPHRASE, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "init", "data", "--non-interactive", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_init_is_safe_to_run_again_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    env = clean_env()
    cases = [{"args": ["keys", "gen-signer", n, "--type", "ed25519"], "cwd": str(tmp_path), "env": env} for n in "abc"]
    assert all(r.code == 0 for r in run_many(cases))
    no_officers = _init(tmp_path)
    assert no_officers.returncode == 1 and no_officers.stderr.splitlines() == [
        "error: data: a new deployment needs its officers",
        "hint: give --officer NAME=PUBLIC_KEY.pem for each (make a key: strongroom keys gen-signer NAME --type "
        "ed25519)",
    ]
    assert not (tmp_path / "data").exists(), "nothing written before refusing"
    officers = ["--officer", "olga=a.pub", "--officer", "oscar=b.pub"]
    first = _init(tmp_path, *officers, "--witness", "https://w.example:8751", "--json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["first_start"] and made["authority"] == {
        "officers": ["olga", "oscar"],
        "threshold": 2,
        "agreement": None,
    }
    assert {"log.key", "service.key", "officers/olga.pub", "witnesses", "serve.toml"} <= set(made["created"])
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "data" / "log.key").read_bytes()
    again = _init(tmp_path, *officers, "--witness", "https://w.example:8751", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] == [] and json.loads(again.stdout)["changed"] == []
    plain = _init(tmp_path)
    assert plain.returncode == 0 and "already set up as asked; nothing changed" in plain.stdout
    intruder = _init(tmp_path, "--officer", "mallory=c.pub")
    assert intruder.returncode == 1 and "mallory with c.pub is not one of them" in intruder.stderr
    assert "admin authority" in intruder.stderr.splitlines()[1]
    moved = _init(tmp_path, "--database", "postgresql://nobody@127.0.0.1:9/none")
    assert moved.returncode == 1 and "init does not move a ledger to another database" in moved.stderr
    port = _init(tmp_path, "--port", "8799", "--json")
    assert port.returncode == 0 and json.loads(port.stdout)["changed"] == ["serve.toml"]
    assert "port = 8799" in (tmp_path / "data" / "serve.toml").read_text()


def test_init_asks_on_a_terminal_for_what_the_flags_left_out(tmp_path: Path) -> None:
    """At a terminal, init interviews: officers, database, key provider, witnesses (empty answers finish)."""
    env = clean_env()
    cases = [{"args": ["keys", "gen-signer", n, "--type", "ed25519"], "cwd": str(tmp_path), "env": env} for n in "ab"]
    assert all(r.code == 0 for r in run_many(cases))
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", "init", "data", "--json"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
        cwd=tmp_path,
        env={**env, "STRONGROOM_SERVER_PASSPHRASE": SERVER_PASSPHRASE, "TERM": "dumb"},
    )
    os.close(secondary)
    answers = ["olga=a.pub", "oscar=b.pub", "", "", "", "https://w1.example:8751", ""]
    os.write(primary, "".join(a + "\n" for a in answers).encode())
    out, _ = process.communicate(timeout=300)
    screen = b""
    while select.select([primary], [], [], 0)[0]:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert process.returncode == 0, screen.decode(errors="replace")
    for question in ("officer as NAME=PUBLIC_KEY.pem", "PostgreSQL URL", "key provider", "witness URL"):
        assert question in screen.decode(errors="replace"), question
    made = json.loads(out)
    assert made["authority"]["officers"] == ["olga", "oscar"] and made["witnesses"] == ["https://w1.example:8751"]
    assert made["settings"] == {} or "database" not in made["settings"]
