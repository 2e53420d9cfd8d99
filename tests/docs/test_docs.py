"""The README and docs/deploy.md say only what is true: their shell blocks run (against a private PostgreSQL
cluster, SoftHSM2, an OpenBao server, the real service and witness, TLS, all on loopback), the blocks that
cannot run here are checked another way, links stay inside the repository, and the command table names real
commands, real options and the extras the code asks for.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.cli.extras import COMMAND_EXTRAS
from strongroom.keys.devservers import OpenBaoDevServer, free_port, start_openbao_dev
from tests.cli.walk import cli_command, leaves
from tests.docs.blocks import ROOT, Block, Unit, shell_blocks

README = ROOT / "README.md"
DEPLOY = ROOT / "docs" / "deploy.md"
SRC = Path(__file__).parents[2] / "src"
SKIP_KINDS = {"packages", "user", "systemctl", "readme-quickstart"}
# the newest PostgreSQL server the Debian package installed (15 on Debian 12)
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]), default=Path("/")).parent
AUTH = ("--auth-local=trust", "--auth-host=scram-sha-256")  # the service and psql over TCP need the password


def test_every_shell_block_is_run_or_checked() -> None:
    blocks = shell_blocks(README) + shell_blocks(DEPLOY)
    assert {b.skip for b in blocks if b.skip} <= SKIP_KINDS, [b.where for b in blocks]
    (quickstart,) = shell_blocks(README)
    assert quickstart.skip == "readme-quickstart"
    ran = [b for b in shell_blocks(DEPLOY) if b.skip is None]
    assert len(ran) >= 10 and sum(b.skip is not None for b in shell_blocks(DEPLOY)) == 5


def test_readme_quickstart_is_what_ci_and_the_demo_do() -> None:
    """The README's two commands, checked instead of run (one reinstalls the package, the other is .ci/run):
    the pip line installs the extra the demo asks for, and .ci/run is the script that lints and runs pytest.
    (tests/cli/test_custody_cli.py runs the demo itself.)"""
    (quickstart,) = shell_blocks(README)
    debian = ["swtpm", "swtpm-tools", "libtss2-dev", "pkg-config", "gcc"]  # the demo's software TPM, tpm2-pytss
    install = ["python3", "-m", "pip", "install", "-e", ".[torch,attest]", "&&", "strongroom", "demo"]
    assert quickstart.commands() == [
        ["apt-get", "update", "&&", "apt-get", "install", "-y", *debian, "&&", *install],
        ["bash", ".ci/run"],
    ]
    listed = (ROOT / ".ci" / "apt-packages").read_text().split()
    assert set(debian) <= set(listed), "CI installs what the README's first command does"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert COMMAND_EXTRAS[("demo",)] == "torch" and "torch" in extras and "attest" in extras
    script = (ROOT / ".ci" / "run").read_text()
    for step in ("apt-packages", "pip install", ".ci/services/", "ruff check", "mypy", "pytest"):
        assert step in script
    installed = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", script)
    # every extra but the benchmarks' peers (bench: CryptoTensors, tensorizer; no test imports them)
    assert installed is not None and set(installed.group(1).split(",")) == set(extras) - {"bench"}
    readme = README.read_text()
    assert f"pip install -e '.[{installed.group(1)}]'" in readme, "the README says which extras .ci/run installs"
    services = (ROOT / ".ci" / "services" / "postgresql.sh").read_text()
    assert "ALTER USER postgres PASSWORD 'strongroom-test'" in services and "pg_ctlcluster" in services
    assert "sets the password of the system `postgres`" in readme and "leaves it running" in readme


def test_deploy_packages_are_what_ci_installs() -> None:
    """Packages named in deploy.md: each Debian package is one .ci/apt-packages lists (so the machine that runs
    this walk installed it the same way); the pip line is the base install, and no command the guide runs needs
    an extra."""
    listed = set((ROOT / ".ci" / "apt-packages").read_text().split()) - {"#"}
    for block in shell_blocks(DEPLOY):
        if block.skip != "packages":
            continue
        for command in block.commands():
            if command[:2] == ["apt-get", "install"]:
                for package in [w for w in command[2:] if not w.startswith("-")]:
                    assert package in listed, f"{package}: not in .ci/apt-packages"
            else:
                assert command == ["python3", "-m", "pip", "install", "-e", "."], command
    used = set()
    for block in shell_blocks(DEPLOY):
        for match in re.finditer(r"(?:^|\s)strongroom ((?:[a-z][a-z0-9-]* ?){1,3})", block.text):
            used.add(tuple(match.group(1).split()))
    needing = {path for path in COMMAND_EXTRAS if any(path == words[: len(path)] for words in used)}
    assert not needing, f"deploy.md runs commands that need an extra: {needing}"
    assert ("init",) in used and ("keys", "pkcs11-init") in {u[:2] for u in used}


def test_deploy_user_blocks_match_the_units() -> None:
    """The service user is the units' User=, and it owns every path the units write."""
    units = {
        match.group(1): match.group(2)
        for match in re.finditer(r"cat > /etc/systemd/system/(\S+) <<'?EOF'?\n(.*?)\nEOF\n", DEPLOY.read_text(), re.S)
    }
    assert set(units) == {"strongroom.service", "strongroom-witness.service"}
    users = {re.search(r"^User=(\S+)$", text, re.M).group(1) for text in units.values()}  # type: ignore[union-attr]
    writes = {p for text in units.values() for p in re.search(r"^ReadWritePaths=(.*)$", text, re.M).group(1).split()}  # type: ignore[union-attr]
    owned: set[str] = set()
    made: set[str] = set()
    for block in shell_blocks(DEPLOY):
        for command in block.commands():
            if block.skip == "user" and command[0] == "useradd":
                made.add(command[-1])
            elif block.skip == "user" and command[0] == "chown":
                owner, *paths = [w for w in command[1:] if w != "-R"]
                assert owner == "strongroom:", command
                owned.update(paths)
    assert users == made == {"strongroom"}
    assert writes <= owned, writes - owned


def test_links_stay_in_the_repository() -> None:
    """Every Markdown link in the README and docs/ is a file or directory of this repository (no absolute
    paths, nothing outside the checkout); web links are allowed only in docs/, as references."""
    broken = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                if doc == README:
                    broken.append(f"{doc.name}: web link {target}")
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if target.startswith("/") or not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken
    for text in (README.read_text(), DEPLOY.read_text()):
        assert "/work/" not in text and "/home/" not in text


def _table_rows() -> list[tuple[str, str]]:
    """(command cell, extra cell) of each row of the README's command table."""
    text = README.read_text()
    start = text.index("| command | what | extra |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append((f"{cells[0]} {cells[1]}", cells[2]))
    return rows


@dataclass
class Mention:
    commands: list[tuple[str, ...]]
    options: set[str]


def _mentions(cell: str) -> Iterator[Mention]:
    """The commands each code span of a command cell names (``a\\|b`` alternatives expanded), and its options."""
    tree = cli_command()
    for span in re.findall(r"`([^`]+)`", cell):
        words = span.replace("\\|", "|").split()
        if words and words[0] == "strongroom":
            words = words[1:]
        paths: list[tuple[tuple[str, ...], object]] = [((), tree)]
        for word in words:
            subs = [(p, c) for p, c in paths if getattr(c, "commands", None)]
            if not subs or not all(w in subs[0][1].commands for w in word.split("|")):  # type: ignore[attr-defined]
                break
            paths = [((*p, w), c.commands[w]) for p, c in subs for w in word.split("|")]  # type: ignore[attr-defined]
        if paths and paths[0][0]:
            yield Mention([p for p, _ in paths], set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", span)))


def test_the_command_table_names_real_commands_options_and_extras() -> None:
    known = dict(leaves(cli_command()))
    named: set[tuple[str, ...]] = set()
    problems = []
    for cell, extra in _table_rows():
        found = list(_mentions(cell))
        assert found, cell
        row_extras = set()
        for mention in found:
            for path in mention.commands:
                if path not in known:
                    problems.append(f"{' '.join(path)}: a group, not a command, in {cell[:40]}")
                    continue
                named.add(path)
                if path in COMMAND_EXTRAS:
                    row_extras.add(COMMAND_EXTRAS[path])
            options = {o for path in mention.commands if path in known for p in known[path].params for o in p.opts}
            options |= {"--help", "--install-completion", "--show-completion"}
            problems += [f"{' '.join(mention.commands[0])}: no option {o}" for o in sorted(mention.options - options)]
        shown = set(re.findall(r"`([a-z]+)`", extra))
        if shown != row_extras:
            problems.append(f"{cell[:50]}: extra column says {sorted(shown)}, the code needs {sorted(row_extras)}")
    missing = sorted(" ".join(p) for p in set(known) - named)
    assert not problems, "\n".join(problems)
    assert not missing, f"commands the README's table does not name: {missing}"


# ---- the deployment guide, run -----------------------------------------------------------------------


@dataclass
class Lab:
    """Where the guide's paths, names and ports point during the test."""

    root: Path
    work: Path
    env: dict[str, str]
    rewrites: list[tuple[str, str]]
    ports: dict[str, int]

    def rewrite(self, text: str) -> str:
        for old, new in self.rewrites:
            text = re.sub(old, new, text)
        return text


@pytest.fixture
def postgres_cluster() -> Iterator[tuple[Path, int]]:
    """A private PostgreSQL cluster (the system's binaries, run as the postgres user) on a free loopback port:
    the guide creates its role and database in it, and password authentication over TCP is required."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL's server binaries are missing from /usr/lib/postgresql (Debian package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="sr-docs-pg-"))
    base.chmod(0o755)
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run(
        [*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", *AUTH],
        check=True,
        capture_output=True,
        cwd=base,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        cwd=base,
    )
    try:
        yield base, port
    finally:
        subprocess.run(
            [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def openbao(tmp_path: Path) -> Iterator[OpenBaoDevServer]:
    """A real OpenBao server with nothing set up (the guide enables transit itself)."""
    server = start_openbao_dev(tmp_path / "openbao")
    with server.client() as client:
        client.delete("/v1/sys/mounts/transit").raise_for_status()
    yield server
    server.stop()


@pytest.fixture
def lab(tmp_path: Path, postgres_cluster: tuple[Path, int], openbao: OpenBaoDevServer) -> Lab:
    from strongroom.keys.devservers import bao_binary

    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    bin_dir = make_launcher(root).parent
    (bin_dir / "bao").symlink_to(bao_binary())
    shims = tmp_path / "shims"
    shims.mkdir()
    sudo = shims / "sudo"  # 'sudo -u USER CMD...' as runuser does it, keeping PGHOST and PGPORT
    sudo.write_text('#!/bin/sh\n[ "$1" = "-u" ] || exit 64\nuser=$2\nshift 2\ncd /\nexec runuser -u "$user" -- "$@"\n')
    sudo.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    socket_dir, pg_port = postgres_cluster
    env = {
        "PATH": f"{shims}:{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "PGHOST": str(socket_dir),
        "PGPORT": str(pg_port),
        "BAO_TOKEN": openbao.root_token,
        "BAO_DISABLE_MLOCK": "true",
    }
    ports = {"service": free_port(), "witness": free_port(), "postgres": pg_port}
    rewrites = [
        *path_rewrites(root),
        (r"https://bao\.internal:8200", openbao.address),
        (r"\b(strongroom|witness)\.internal\b", "localhost"),
        (r"\b8750\b", str(ports["service"])),
        (r"\b8751\b", str(ports["witness"])),
        (r"\b5432\b", str(pg_port)),
    ]
    return Lab(root, work, env, rewrites, ports)


def path_rewrites(root: Path) -> list[tuple[str, str]]:
    """The guide's system paths, moved under ``root``."""
    return [
        (r"/etc/systemd/system", str(root / "etc" / "systemd" / "system")),
        (r"/etc/strongroom", str(root / "etc" / "strongroom")),
        (r"/var/lib/strongroom", str(root / "var" / "lib" / "strongroom")),
        (r"/usr/local/bin/strongroom", str(root / "usr" / "local" / "bin" / "strongroom")),
    ]


def make_launcher(root: Path) -> Path:
    """ROOT/usr/local/bin/strongroom: this checkout's CLI, as the unit's ExecStart names it."""
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    strongroom = bin_dir / "strongroom"
    strongroom.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(SRC))} exec {shlex.quote(sys.executable)} -m strongroom.cli.main"
        ' "$@"\n'
    )
    strongroom.chmod(0o755)
    return strongroom


def _run_blocks(lab: Lab, blocks: list[Block]) -> None:
    """Run blocks in one bash session that continues the previous one's exported variables and umask."""
    state = lab.work / ".session"
    script = ["set -euo pipefail"]
    if state.exists():
        script.append(f". {state}")
    for block in blocks:
        script.append(f"echo '### {block.where}' >&2")
        script.append(lab.rewrite(block.text))
    script.append(f"{{ export -p; echo umask $(umask); }} > {state}")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=lab.work,
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


class Services:
    """The units' ExecStart processes, started as systemd would start them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def systemctl(self, block: Block) -> None:
        for command in block.commands():
            assert command[0] == "systemctl", command
            verb, *names = [w for w in command[1:] if w != "--now"]
            if verb == "daemon-reload":
                continue
            assert verb in ("enable", "restart"), command
            for name in names:
                self.stop(name)
                self.start(name)

    def start(self, name: str) -> None:
        unit = Unit.parse(self.lab.root / "etc" / "systemd" / "system" / name)
        log = open(self.lab.work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.running[name] = subprocess.Popen(
            unit.exec_start, env=unit.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/"
        )
        log.close()
        port = unit.option("--port") or tomllib.loads(
            (Path(unit.option("--data") or "") / "serve.toml").read_text()
        ).get("port")
        deadline = time.monotonic() + 90
        while True:
            if self.running[name].poll() is not None:
                raise AssertionError(f"{name} exited: {(self.lab.work / f'{name}.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"{name} did not listen on {port}"
                time.sleep(0.2)

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        for name in list(self.running)[::-1]:
            self.stop(name)


def test_the_deployment_guide_runs(lab: Lab) -> None:
    """Every block of docs/deploy.md in order: the runnable ones in one shell session, the systemctl ones by
    starting each unit's ExecStart with its environment; at the end the service answers over TLS with a
    checkpoint the witness cosigned, and an auditor pinning both keys verifies the log and its custody."""
    services = Services(lab)
    pending: list[Block] = []
    try:
        for block in shell_blocks(DEPLOY):
            if block.skip is None:
                pending.append(block)
            elif block.skip == "systemctl":
                _run_blocks(lab, pending)
                pending = []
                services.systemctl(block)
            else:
                assert block.skip in ("packages", "user"), block.where  # checked by the tests above
        _run_blocks(lab, pending)
        assert set(services.running) == {"strongroom.service", "strongroom-witness.service"}
        assert all(p.poll() is None for p in services.running.values())
        data = lab.root / "var" / "lib" / "strongroom"
        settings = tomllib.loads((data / "serve.toml").read_text())
        assert settings["key_provider"] == "openbao" and settings["tls_cert"].endswith("localhost.pem")
        credentials = settings["database"].split("://", 1)[1].split("@", 1)[0]
        assert credentials == "strongroom", "no password in the database URL (libpq reads PGPASSFILE)"
        context = ssl.create_default_context(cafile=str(lab.root / "etc" / "strongroom" / "tls" / "ca.pem"))
        import httpx

        checkpoint = httpx.get(f"https://localhost:{lab.ports['service']}/checkpoint", verify=context).text
        witness_key = (lab.root / "var" / "lib" / "strongroom-witness" / "witness.vkey").read_text().split("+")[0]
        assert f"\u2014 {witness_key} " in checkpoint, checkpoint  # the witness's cosignature line
        with pytest.raises(httpx.TransportError):  # TLS only: plain HTTP is not answered
            httpx.get(f"http://localhost:{lab.ports['service']}/checkpoint", timeout=5).raise_for_status()
        for path in ("etc/strongroom", "var/lib/strongroom", "etc/strongroom/serve.env", "etc/strongroom/pgpass"):
            assert (lab.root / path).stat().st_mode & 0o077 == 0, path
    finally:
        services.close()


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """The guide's units (paths moved under the test's root) pass systemd-analyze verify without a warning;
    an invalid key would have been reported. (The guide's own verify block runs in the walk above.)"""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    root = tmp_path / "root"
    make_launcher(root)
    units_dir = root / "etc" / "systemd" / "system"
    units_dir.mkdir(parents=True)
    for match in re.finditer(r"cat > /etc/systemd/system/(\S+) <<'?EOF'?\n(.*?)\nEOF\n", DEPLOY.read_text(), re.S):
        body = match.group(2)
        for old, new in path_rewrites(root):
            body = re.sub(old, new, body)
        body = body.replace("$(cat " + str(root / "var/lib/strongroom/log.vkey") + ")", "log+0+key")
        (units_dir / match.group(1)).write_text(body.replace("\\\\\n", "\\\n"))
    (root / "etc" / "strongroom").mkdir(parents=True)
    (root / "etc" / "strongroom" / "serve.env").write_text("STRONGROOM_SERVER_PASSPHRASE=x\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    units = sorted(units_dir.iterdir())
    assert len(units) == 2
    checked = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=120, env=env
    )
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    broken = units[0].read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    units[0].write_text(broken)
    refused = subprocess.run(
        ["systemd-analyze", "verify", str(units[0])], capture_output=True, text=True, timeout=120, env=env
    )
    assert "Unknown key" in refused.stderr
