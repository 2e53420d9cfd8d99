"""``strongroom init``: set up (or bring up to date) a deployment's data directory, then 'strongroom serve' it.

What it writes under DATA (0700), each step only if it is not already so, so a second run with the same flags
changes nothing and says so:

- ``log.key``, ``log.origin``, ``log.vkey``, ``service.key``, ``service.pub``: the log's and the custody
  service's keys, encrypted under STRONGROOM_SERVER_PASSPHRASE (or a prompt), and the ledger database (SQLite
  in DATA, or the PostgreSQL database ``--database`` names, which must be reachable);
- ``officers/NAME.pub``: the genesis officers, who become the ledger's authority now (with ``--threshold`` and
  ``--agreement``); after that the officer set changes only by its own quorum ('strongroom admin authority');
- ``appenders/NAME.pub`` and ``NAME.types``: who may append which entry types (default ``model.evaluated``);
- ``witnesses``: the witness URLs the log sends each checkpoint to;
- ``serve.toml``: database, key provider, TLS, address and port, which 'strongroom serve --data DATA' reads
  (its flags override).

Interactive on a terminal (it asks for what the flags left out); with ``--non-interactive`` or without a
terminal it uses the flags alone. ``--json`` prints what was done as data.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.common import JsonOption, ProviderChoice, console, err_console, print_json
from strongroom.errors import StrongroomError

SERVE_SETTINGS = "serve.toml"
SETTING_KEYS = (
    "host",
    "port",
    "database",
    "keys",
    "key_provider",
    "key_config",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8750


class InitError(StrongroomError):
    """The deployment directory cannot be brought to the state asked for."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def read_serve_settings(data: Path) -> dict[str, Any]:
    """DATA/serve.toml as 'strongroom init' wrote it; empty when there is none."""
    path = data / SERVE_SETTINGS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        settings = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InitError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise InitError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(SETTING_KEYS)})")
    return settings


def _toml(settings: dict[str, Any]) -> bytes:
    lines = [
        "# Written by 'strongroom init'; 'strongroom serve --data DIR' reads it and its flags override it.",
        "# Secrets never go here: STRONGROOM_SERVER_PASSPHRASE, STRONGROOM_PASSPHRASE, PINs and tokens come from",
        "# the environment (or the key settings' *_file entries).",
    ]
    for key in SETTING_KEYS:
        if settings.get(key) is not None:
            value = settings[key]
            lines.append(f"{key} = {value}" if isinstance(value, int) else f"{key} = {json.dumps(str(value))}")
    return ("\n".join(lines) + "\n").encode()


def _pairs(values: list[str], option: str, what: str) -> dict[str, str]:
    """NAME=VALUE items of a repeatable option."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value or "/" in name or name.startswith("."):
            raise InitError(f"{option} {item!r}: expected NAME={what} with a plain NAME")
        if name in out:
            raise InitError(f"{option}: {name} given twice")
        out[name] = value
    return out


class Report:
    """What init did, step by step."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.created: list[str] = []
        self.changed: list[str] = []
        self.unchanged: list[str] = []

    def write(self, path: Path, content: bytes, mode: int) -> None:
        from strongroom.atomic import write_atomic

        label = str(path.relative_to(self.data))
        if path.exists():
            if path.read_bytes() == content:
                self.unchanged.append(label)
                return
            self.changed.append(label)
        else:
            self.created.append(label)
        write_atomic(path, content, mode=mode)


def _public_key(path: Path, option: str) -> bytes:
    from strongroom.signing import SigningKeyError, Verifier

    try:
        return Verifier.load(path).pem()
    except (SigningKeyError, OSError, ValueError) as exc:
        raise InitError(f"{option}: {path}: not a public key: {exc}") from None


def _ask(question: str, default: str = "") -> str:
    suffix = f" [{default}]" if default else ""
    err_console.print(f"{question}{suffix}: ", end="")
    answer = sys.stdin.readline()
    if not answer:
        raise InitError("input ended before an answer was given", "run it with --non-interactive and flags")
    return answer.strip() or default


def _ask_many(question: str) -> list[str]:
    """Ask until an empty answer."""
    answers: list[str] = []
    while True:
        answer = _ask(f"{question} (empty to finish)")
        if not answer:
            return answers
        answers.append(answer)


def init(
    data: Annotated[Path, typer.Argument(help="The deployment's data directory (created 0700).")],
    officer: Annotated[
        list[str] | None, typer.Option("--officer", help="NAME=PUBLIC_KEY.pem of a genesis officer (repeatable).")
    ] = None,
    threshold: Annotated[
        int, typer.Option("--threshold", min=1, help="Officers who must co-sign a change that grants access.")
    ] = 2,
    agreement: Annotated[
        Path | None, typer.Option("--agreement", help="The access agreement everyone must have signed.")
    ] = None,
    appender: Annotated[
        list[str] | None,
        typer.Option("--appender", help="NAME=PUBLIC_KEY.pem of a service that may append entries (repeatable)."),
    ] = None,
    appender_types: Annotated[
        list[str] | None,
        typer.Option(
            "--appender-types", help="NAME=TYPE[,TYPE...]: what appender NAME may append (default model.evaluated)."
        ),
    ] = None,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="URL of a witness to send checkpoints to (repeatable).")
    ] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="PostgreSQL URL (default: SQLite in DATA); must be reachable.")
    ] = None,
    origin: Annotated[str | None, typer.Option("--origin", help="The log's origin name, e.g. example.org/log.")] = None,
    keys: Annotated[Path | None, typer.Option("--keys", help="Local keyring the custody service unwraps with.")] = None,
    key_provider: Annotated[
        ProviderChoice | None,
        typer.Option("--key-provider", case_sensitive=False, help="Where data keys are unwrapped (with --key-config)."),
    ] = None,
    key_config: Annotated[
        Path | None, typer.Option("--key-config", help="Key-provider settings file (TOML), for pkcs11/openbao/shamir.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key.")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option("--tls-client-ca", help="Require client certificates from this CA (mTLS).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help=f"Address to listen on (default {DEFAULT_HOST}).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help=f"Port (default {DEFAULT_PORT}).")
    ] = None,
    check_keys: Annotated[
        bool,
        typer.Option(help="Open the key provider once to check its settings (needs its passphrase, PIN or token)."),
    ] = True,
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", help="Never ask; use the flags alone (automatic without a terminal).")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Set up a deployment's data directory: server keys, officers, appenders, witnesses, database, key
    provider, TLS. Safe to run again: it changes only what the flags change, and says what it did.

    Then: 'strongroom serve --data DATA' (docs/deploy.md runs it under systemd).
    """
    from strongroom.cli.serve import server_passphrase
    from strongroom.filemodes import private_directory

    interactive = not non_interactive and sys.stdin.isatty()
    officers = _pairs(officer or [], "--officer", "PUBLIC_KEY.pem")
    appenders = _pairs(appender or [], "--appender", "PUBLIC_KEY.pem")
    listed = _pairs(appender_types or [], "--appender-types", "TYPE[,TYPE]")
    types = {name: value.replace(",", " ").split() for name, value in listed.items()}
    for name in types:
        if name not in appenders and not (data / "appenders" / f"{name}.pub").exists():
            raise InitError(f"--appender-types {name}: no appender {name} (give --appender {name}=KEY.pem)")
    first = not (data / "log.key").exists()
    settings = read_serve_settings(data) if data.is_dir() else {}

    if tls_cert is not None or tls_key is not None or tls_client_ca is not None:
        from strongroom.tls import server_options

        server_options(tls_cert, tls_key, tls_client_ca)  # both halves present and readable, before anything is written

    wanted = dict(settings)
    for key, value in (
        ("host", host), ("port", port), ("database", database), ("keys", keys),
        ("key_provider", key_provider.value if key_provider else None), ("key_config", key_config),
        ("tls_cert", tls_cert), ("tls_key", tls_key), ("tls_client_ca", tls_client_ca),
    ):  # fmt: skip
        if value is not None:
            wanted[key] = (
                value if isinstance(value, int) else str(Path(value).resolve()) if isinstance(value, Path) else value
            )
    if interactive:
        witness = (witness or []) + _interview(data, first, officers, wanted)
    if first and not officers and not (data / "officers").is_dir():
        raise InitError(
            f"{data}: a new deployment needs its officers",
            "give --officer NAME=PUBLIC_KEY.pem for each (make a key: strongroom keys gen-signer NAME --type ed25519)",
        )
    if not first:
        for name, path in officers.items():
            held = data / "officers" / f"{name}.pub"
            if not held.exists() or held.read_bytes() != _public_key(Path(path), "--officer"):
                raise InitError(
                    f"{data}: the ledger's officers were fixed at its first start; "
                    f"{name} with {path} is not one of them",
                    "change the officer set with 'strongroom admin authority' (the current officers co-sign it)",
                )
    if not first and wanted.get("database") != settings.get("database"):
        raise InitError(
            f"{data}: its ledger already lives in {settings.get('database') or 'SQLite in ' + str(data)}; "
            "init does not move a ledger to another database"
        )

    officer_pems = {name: _public_key(Path(path), "--officer") for name, path in officers.items()}
    appender_pems = {name: _public_key(Path(path), "--appender") for name, path in appenders.items()}
    _check_appenders(data, appender_pems, types)
    passphrase = server_passphrase(first)  # asked (and, for new keys, checked for strength) before any write

    before = _files(data)
    private_directory(data)
    report = Report(data)
    for name, pem in officer_pems.items():
        folder = data / "officers"
        folder.mkdir(mode=0o700, exist_ok=True)
        report.write(folder / f"{name}.pub", pem, 0o644)
    for name, pem in appender_pems.items():
        folder = data / "appenders"
        folder.mkdir(mode=0o700, exist_ok=True)
        report.write(folder / f"{name}.pub", pem, 0o644)
    for name, allowed in types.items():
        report.write(data / "appenders" / f"{name}.types", (" ".join(allowed) + "\n").encode(), 0o644)
    if witness:
        report.write(data / "witnesses", ("\n".join(witness) + "\n").encode(), 0o644)
    if wanted != settings or not (data / SERVE_SETTINGS).exists():
        report.write(data / SERVE_SETTINGS, _toml(wanted), 0o600)

    if check_keys and (wanted.get("keys") or wanted.get("key_provider") or wanted.get("key_config")):
        _check_provider(wanted)

    digest = None
    if agreement is not None:
        from strongroom.cli.admin import agreement_digest

        digest = agreement_digest(agreement)
    ledger, authority = _first_start(data, wanted.get("database"), origin, threshold, digest, passphrase)
    noted = set(report.created) | set(report.changed) | set(report.unchanged)
    report.created += sorted(_files(data) - before - noted)
    _check_officers(data, officers, authority, threshold)
    serve_command = ["strongroom", "serve", "--data", str(data.resolve())]
    summary = {
        "data": str(data),
        "first_start": first,
        "created": report.created,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "log": ledger,
        "authority": authority,
        "settings": {
            k: redact(wanted[k]) if k == "database" else wanted[k] for k in SETTING_KEYS if wanted.get(k) is not None
        },
        "witnesses": (data / "witnesses").read_text().split() if (data / "witnesses").exists() else [],
        "appenders": sorted(p.stem for p in (data / "appenders").glob("*.pub"))
        if (data / "appenders").is_dir()
        else [],
        "serve": serve_command,
    }
    if json_out:
        print_json(summary)
        return
    _print(summary)


def _interview(data: Path, first: bool, officers: dict[str, str], wanted: dict[str, Any]) -> list[str]:
    """Ask, on a terminal, for what the flags left out; returns witness URLs given."""
    if first and not officers and not (data / "officers").is_dir():
        err_console.print(
            "Officers: each genesis officer's public key ('strongroom keys gen-signer NAME --type ed25519' makes "
            "one; the private key stays with the officer)."
        )
        for answer in _ask_many("officer as NAME=PUBLIC_KEY.pem"):
            officers.update(_pairs([answer], "officer", "PUBLIC_KEY.pem"))
    if first and "database" not in wanted:
        answer = _ask("PostgreSQL URL (empty: SQLite in the data directory)")
        if answer:
            wanted["database"] = answer
    if not any(k in wanted for k in ("keys", "key_provider", "key_config")):
        answer = _ask("key provider: local, pkcs11, openbao or shamir (empty: none yet)")
        if answer == "local":
            wanted["keys"] = str(Path(_ask("local keyring directory (strongroom keys init DIR)")).resolve())
        elif answer:
            wanted["key_provider"] = ProviderChoice(answer).value
            wanted["key_config"] = str(Path(_ask("key settings file (docs/keys.md)")).resolve())
    if not (data / "witnesses").exists():
        return _ask_many("witness URL")
    return []


def _files(data: Path) -> set[str]:
    """Every file under ``data``, relative to it (SQLite's passing -wal and -shm files left out)."""
    if not data.is_dir():
        return set()
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _check_appenders(data: Path, pems: dict[str, bytes], types: dict[str, list[str]]) -> None:
    """Refuse an allow-list the server would refuse (a custody or people type), before anything is written."""
    from strongroom.custody.authority import DEFAULT_APPENDER_TYPES, Appenders
    from strongroom.server.app import ServerSettingsError
    from strongroom.signing import Verifier

    found: dict[str, frozenset[str]] = {}
    for name in sorted(set(pems) | set(types)):
        pem = pems.get(name) or (data / "appenders" / f"{name}.pub").read_bytes()
        allowed = frozenset(types[name]) if name in types else DEFAULT_APPENDER_TYPES
        found[Verifier.from_pem(pem).key_id] = allowed
    try:
        Appenders(found)
    except (StrongroomError, ServerSettingsError) as exc:
        raise InitError(f"--appender-types: {exc}") from None


def redact(url: str | None) -> str | None:
    """A database URL with its password hidden."""
    if not url or "@" not in url or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, where = rest.rpartition("@")
    user, sep, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if sep else ''}@{where}"


def _check_provider(settings: dict[str, Any]) -> None:
    from strongroom.cli.common import provider_from_options

    keys = settings.get("keys")
    config = settings.get("key_config")
    with provider_from_options(
        Path(keys) if keys else None, None, settings.get("key_provider"), Path(config) if config else None
    ):
        pass


def _first_start(
    data: Path, database: str | None, origin: str | None, threshold: int, agreement: str | None, passphrase: bytes
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Open the services once, as 'serve' would: keys made on first use, the genesis authority logged."""
    from strongroom.server.app import appenders_in, open_services

    appenders_in(data)  # a bad allow-list is refused now, not at the first start of serve
    services = open_services(
        data, database, [], origin, threshold=threshold, agreement=agreement, key_passphrase=passphrase
    )
    try:
        ledger = {
            "origin": services.ledger.origin,
            "size": services.ledger.size,
            "vkey": services.ledger.signer.verifier.vkey,
        }
        held = services.custody.state.authority
        authority = (
            None
            if held is None
            else {
                "officers": sorted(o.name for o in held.officers),
                "threshold": held.threshold,
                "agreement": held.required_agreement,
            }
        )
    finally:
        services.close()
    return ledger, authority


def _check_officers(data: Path, officers: dict[str, str], authority: dict[str, Any] | None, threshold: int) -> None:
    if authority is None:
        raise InitError(f"{data}: no officers: give --officer NAME=PUBLIC_KEY.pem for each")
    if officers and set(officers) - set(authority["officers"]):
        raise InitError(
            f"the ledger's authority is already officers {', '.join(authority['officers'])}; "
            f"{', '.join(sorted(set(officers) - set(authority['officers'])))} cannot join by init",
            "change the officer set with 'strongroom admin authority' (the current officers co-sign it)",
        )


def _print(summary: dict[str, Any]) -> None:
    data = summary["data"]
    for label in summary["created"]:
        console.print(f"created {data}/{label}", soft_wrap=True)
    for label in summary["changed"]:
        console.print(f"updated {data}/{label}", soft_wrap=True)
    if not summary["created"] and not summary["changed"]:
        console.print(f"{data}: already set up as asked; nothing changed", soft_wrap=True)
    log, authority = summary["log"], summary["authority"]
    console.print(f"ledger {log['origin']} (size {log['size']}); verifier key {log['vkey']}", soft_wrap=True)
    console.print(
        f"officers {', '.join(authority['officers'])}: {authority['threshold']} must co-sign a change that "
        "grants access",
        soft_wrap=True,
    )
    settings = summary["settings"]
    if settings.get("key_provider"):
        provider = f"{settings['key_provider']} ({settings.get('key_config')})"
    elif settings.get("keys"):
        provider = f"local keyring {settings['keys']}"
    else:
        provider = "none (nothing can be released until one is set)"
    console.print(
        f"database: {settings.get('database') or 'SQLite in ' + data}; key provider: {provider}; "
        f"TLS: {'on' if settings.get('tls_cert') else 'off'}; witnesses: {', '.join(summary['witnesses']) or 'none'}",
        soft_wrap=True,
    )
    console.print(f"next: {' '.join(summary['serve'])}  (pin the verifier key above in every auditor)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
