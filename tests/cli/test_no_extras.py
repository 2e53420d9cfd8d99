"""The base install, without any extra: every command parses and keeps the error contract, the commands that
need an extra say which one and the pip line before doing anything, and the base commands do their job.

The environment is a real venv without system site-packages holding only what the base dependencies bring
(``tests/cli/base_venv.py`` explains how it is made, and how to make it with pip instead).
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from strongroom.cli.extras import COMMAND_EXTRAS
from tests.cli.base_venv import make_base_venv, venv_env
from tests.cli.walk import FORKRUN, Result, cli_command, contract_problems, leaves, params

PASSPHRASE = "cli passphrase saffron kettle"
EXTRA_MODULES = (
    "torch",
    "transformers",
    "safetensors",
    "scipy",
    "av",
    "faster_whisper",
    "ctranslate2",
    "shapely",
    "pyproj",
    "countryinfo",
)


@pytest.fixture(scope="module")
def base_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base_venv(tmp_path_factory.mktemp("venv"))


def run_in_venv(python: Path, cases: list[dict[str, object]]) -> list[Result]:
    for case in cases:
        case.setdefault("env", venv_env())
    reply = subprocess.run(
        [str(python), FORKRUN, "--parallel", "4", "--timeout", "120"],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=venv_env(),
        timeout=600,
    )
    assert reply.returncode == 0, reply.stderr
    return [Result(**r) for r in json.loads(reply.stdout)]


def test_the_venv_has_no_extra(base_python: Path) -> None:
    probe = "import importlib.util as u, json, sys; print(json.dumps([m for m in sys.argv[1:] if u.find_spec(m)]))"
    found = subprocess.run(
        [str(base_python), "-c", probe, *EXTRA_MODULES, "strongroom", "typer", "fastapi", "psycopg"],
        capture_output=True,
        text=True,
        env=venv_env(),
        check=True,
    )
    assert json.loads(found.stdout) == ["strongroom", "typer", "fastapi", "psycopg"]


def test_every_command_parses_without_extras(base_python: Path) -> None:
    """Help, a bogus option and a missing argument for every command, in the base install."""
    cases: list[dict[str, object]] = []
    expected: list[tuple[tuple[str, ...], int]] = []
    for path, command in leaves(cli_command()):
        cases.append({"args": [*path, "--help"]})
        expected.append((path, 0))
        cases.append({"args": [*path, "--no-such-option-at-all"]})
        expected.append((path, 2))
        if any(p.required for p in params(command)):
            cases.append({"args": [*path]})
            expected.append((path, 2))
    broken = []
    for (path, code), result in zip(expected, run_in_venv(base_python, cases), strict=True):
        if code == 0:
            if result.code != 0 or "Usage: strongroom" not in result.stdout:
                broken.append(f"{path} --help: exit {result.code}: {result.stderr}")
        else:
            broken += [f"{path}: {p}" for p in contract_problems(result, code)]
    assert not broken, "\n".join(broken)


def test_commands_that_need_an_extra_say_which_and_do_nothing(base_python: Path, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    (tmp_path / "meeting.wav").write_bytes(b"RIFF")
    demo, kept, transcribe = run_in_venv(
        base_python,
        [
            {"args": ["demo"], "env": venv_env(TMPDIR=str(temp)), "cwd": str(tmp_path)},
            {"args": ["demo", "--workdir", str(tmp_path / "demo")], "cwd": str(tmp_path)},
            {
                "args": ["meetings", "transcribe", str(tmp_path / "meeting.wav"), "--out", str(tmp_path / "m")],
                "cwd": str(tmp_path),
            },
        ],
    )
    assert demo.code == 1 and demo.lines == [
        "error: strongroom demo needs the 'torch' extra, which is not installed (no module 'torch')",
        hint("torch"),
    ]
    assert list(temp.iterdir()) == [], "the demo made a work directory before refusing"
    assert kept.code == 1 and not (tmp_path / "demo").exists()
    assert not contract_problems(transcribe, 1)
    assert transcribe.lines[0].startswith("error: strongroom meetings transcribe needs the 'meetings' extra")
    assert transcribe.lines[1] == hint("meetings")
    assert not (tmp_path / "m").exists()


def hint(extra: str) -> str:
    return f"hint: install it: python3 -m pip install -e '.[{extra}]' (in the Strongroom checkout)"


def test_geo_and_inference_name_their_extra(base_python: Path, tmp_path: Path) -> None:
    """geo verify/audit/show need the geo extra, egress inference serve the torch extra, host attest the attest
    extra: said before any work."""
    opening = tmp_path / "opening.json"
    cases = {
        "geo verify": [
            "geo",
            "verify",
            "m.json",
            "--landmarks",
            "l.json",
            "--host-key",
            "h.pub",
            "--opening-out",
            str(opening),
        ],
        "geo audit": ["geo", "audit", "--statement", "s.json", "--opening", "o.json", "--landmarks", "l.json"],
        "geo show": ["geo", "show", "h1", "--ledger", "http://127.0.0.1:9"],
        "egress inference serve": ["egress", "inference", "serve", "--listen", "127.0.0.1:0"],
        "demo-incident": ["demo-incident", "--workdir", str(tmp_path / "incident")],
        **{
            f"{group} attest": [group, "attest", "--identity", "i.pub", "--out", "e.json", "--tcti", "swtpm:port=9"]
            for group in ("host", "hosts")
        },
    }
    named = {tuple(name.split()) for name in cases} | {("demo",), ("meetings", "transcribe")}
    assert named == set(COMMAND_EXTRAS), "every command that needs an extra is tried here"
    results = run_in_venv(base_python, [{"args": args, "cwd": str(tmp_path)} for args in cases.values()])
    for (name, _), result in zip(cases.items(), results, strict=True):
        extra = COMMAND_EXTRAS[tuple(name.split())]
        assert not contract_problems(result, 1), (name, result)
        said = "host attest" if name == "hosts attest" else name  # `hosts` is `host` under its plural name
        assert result.lines[0].startswith(f"error: strongroom {said} needs the '{extra}' extra"), result.lines
        assert result.lines[1] == hint(extra)
    assert not opening.exists()


def tiny_model(where: Path) -> Path:
    """A model directory with a real (tiny) safetensors file, written by hand (no safetensors package)."""
    model = where / "tiny-model"
    model.mkdir()
    data = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    (model / "config.json").write_text('{"model_type": "tiny"}')
    return model


def test_base_commands_work_without_extras(base_python: Path, tmp_path: Path) -> None:
    """keys, seal, inspect, ls, manifest, unseal, sign, verify and init, in the base install."""
    model = tiny_model(tmp_path)
    env = venv_env(STRONGROOM_PASSPHRASE=PASSPHRASE, STRONGROOM_SERVER_PASSPHRASE="plum harbour vinyl cascade")
    steps = [
        ["keys", "init", "keys", "--json"],
        ["keys", "gen-signer", "signer"],
        ["seal", str(model), "sealed", "--keys", "keys", "--json"],
        ["inspect", "sealed", "--json"],
        ["ls", "sealed", "--keys", "keys", "--json"],
        ["manifest", str(model), "--json"],
        ["manifest", "sealed", "--keys", "keys", "--json"],
        ["sign", str(model), "--signer-key", "signer.key", "--json"],
        ["verify", str(model), "--signer", "signer.pub", "--json"],
        ["unseal", "sealed", "plain", "--keys", "keys", "--plaintext-to-disk", "--json"],
        ["keys", "gen-signer", "olga", "--type", "ed25519"],
        ["keys", "gen-signer", "oscar", "--type", "ed25519"],
        ["init", "data", "--officer", "olga=olga.pub", "--officer", "oscar=oscar.pub", "--json"],
    ]
    results = []
    for step in steps:  # in order: each uses what the one before made
        (result,) = run_in_venv(base_python, [{"args": step, "env": env, "cwd": str(tmp_path)}])
        assert result.code == 0, (step, result.stderr)
        results.append(result)
    listing = json.loads(results[4].stdout)["files"]["model.safetensors"]
    assert listing == [{"name": "w", "dtype": "F32", "shape": [2, 2], "bytes": 16}]
    plain_id, sealed_id = (json.loads(results[i].stdout)["model_id"] for i in (5, 6))
    assert plain_id == sealed_id == json.loads(results[2].stdout)["model_id"]
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    assert json.loads(results[-1].stdout)["authority"]["officers"] == ["olga", "oscar"]
