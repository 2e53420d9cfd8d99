"""``strongroom serve``: the ledger, custody and people service over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import KekFileOption, KeyConfigOption, KeyProviderOption, console, open_provider
from strongroom.keys.provider import KeyProvider


def serve(
    data: Annotated[
        Path, typer.Option("--data", help="Data directory (server keys, officers, appenders, serve.toml, SQLite).")
    ],
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to listen on (default 8750).")] = None,
    database: Annotated[str | None, typer.Option(help="PostgreSQL URL instead of SQLite under --data.")] = None,
    keys: Annotated[Path | None, typer.Option("--keys", help="Local keyring the custody service unwraps with.")] = None,
    kek_file: KekFileOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    origin: Annotated[str | None, typer.Option(help="Log origin name (first start only).")] = None,
    officer_threshold: Annotated[
        int, typer.Option(min=1, help="Officers who must co-sign a change that grants access (first start only).")
    ] = 2,
    agreement: Annotated[
        Path | None,
        typer.Option(help="The access agreement everyone must have signed (first start only; then 'admin authority')."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option("--tls-client-ca", help="Require client certificates issued by this CA (mTLS).")
    ] = None,
    allow_loose_permissions: Annotated[
        bool, typer.Option(help="Start although the data directory, keys or databases are open to other users.")
    ] = False,
) -> None:
    """Serve the transparency ledger (C2SP tlog-tiles), custody, people and host APIs.

    On first start the officers whose public keys are in DATA/officers/NAME.pub become the ledger's
    authority (with --officer-threshold and --agreement); from then on the ledger is the only source of
    who administers custody, and changes go through 'strongroom admin authority'.

    The custody service unwraps data keys with the key provider given (--keys for a local keyring, or
    --key-provider/--key-config for PKCS#11, OpenBao or Shamir); without one, nothing can be released.
    The log and service keys are encrypted at rest under STRONGROOM_SERVER_PASSPHRASE (or a prompt).

    Settings 'strongroom init' wrote to DATA/serve.toml (database, key provider, TLS, address, port) apply
    unless a flag overrides them.
    """
    import os

    import uvicorn

    from strongroom.cli.init import DEFAULT_HOST, DEFAULT_PORT, read_serve_settings
    from strongroom.server.app import create_app, open_services
    from strongroom.server.interpreter import tune_for_serving

    saved = read_serve_settings(data) if data.is_dir() else {}
    host = host or saved.get("host") or DEFAULT_HOST
    port = port or int(saved.get("port") or DEFAULT_PORT)
    database = database or saved.get("database")
    if keys is None and key_provider is None and key_config is None:
        keys = Path(saved["keys"]) if saved.get("keys") else None
        key_provider = saved.get("key_provider")
        key_config = Path(saved["key_config"]) if saved.get("key_config") else None
    tls_cert = tls_cert or (Path(saved["tls_cert"]) if saved.get("tls_cert") else None)
    tls_key = tls_key or (Path(saved["tls_key"]) if saved.get("tls_key") else None)
    tls_client_ca = tls_client_ca or (Path(saved["tls_client_ca"]) if saved.get("tls_client_ca") else None)
    wanted = keys or key_provider or key_config
    providers: list[KeyProvider] = [open_provider(keys, kek_file, key_provider, key_config)] if wanted else []
    from strongroom.cli.admin import agreement_digest

    digest = agreement_digest(agreement) if agreement else None
    from strongroom.tls import server_options

    tls = server_options(tls_cert, tls_key, tls_client_ca)
    os.umask(0o077)  # everything the server creates (keys, databases, WAL files) is private
    services = open_services(
        data,
        database,
        providers,
        origin,
        threshold=officer_threshold,
        agreement=digest,
        key_passphrase=server_passphrase(first_start=not (data / "log.key").exists()),
        allow_loose_permissions=allow_loose_permissions,
    )
    authority = services.custody.state.authority
    if authority is None:
        console.print(f"[yellow]no officers yet: put their public keys in {data / 'officers'} and restart[/]")
    elif digest is not None and authority.required_agreement != digest:
        console.print("[yellow]--agreement differs from the ledger's; change it with 'strongroom admin authority'[/]")
    console.print(
        f"ledger {services.ledger.origin} (size {services.ledger.size}) on {'https' if tls else 'http'}://{host}:{port}"
        f"{' (client certificates required)' if tls_client_ca else ''}; "
        f"verifier key in {data / 'log.vkey'}"
    )
    try:
        config = uvicorn.Config(create_app(services, data), host=host, port=port, log_level="warning", **tls)
        config.load()  # imports the protocol and loop modules now, so they are frozen with the rest
        tune_for_serving()
        uvicorn.Server(config).run()
    finally:
        services.close()


SERVER_PASSPHRASE_ENV = "STRONGROOM_SERVER_PASSPHRASE"


def server_passphrase(first_start: bool) -> bytes:
    """The passphrase the log and service keys are encrypted under: the environment, else a prompt; on first
    start it must pass the strength rule."""
    import getpass
    import sys

    from strongroom import process
    from strongroom.keys.errors import KeyProviderError
    from strongroom.keys.passphrase import check_passphrase

    value = process.secret(SERVER_PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise KeyProviderError(f"no server key passphrase: set {SERVER_PASSPHRASE_ENV} or run interactively")
        value = getpass.getpass("Server key passphrase: ")
        if first_start and getpass.getpass("Repeat passphrase: ") != value:
            raise KeyProviderError("the passphrases do not match")
    if first_start:
        check_passphrase(value, "the server key passphrase")
    return value.encode("utf-8")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
