"""``strongroom witness serve``: a C2SP tlog-witness for one or more logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import console

witness_app = typer.Typer(help="Run a witness that cosigns only consistent checkpoints.", no_args_is_help=True)


@witness_app.command("serve")
def serve(
    data: Annotated[Path, typer.Option("--data", help="Witness key and state directory.")],
    name: Annotated[str, typer.Option("--name", help="Witness name, e.g. witness.example.org/w1.")],
    log_vkey: Annotated[list[str], typer.Option("--log-vkey", help="Verifier key of a log to witness.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8751,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option("--tls-client-ca", help="Require client certificates issued by this CA (mTLS).")
    ] = None,
) -> None:
    """Serve POST /add-checkpoint; the witness's vkey is written to DATA/witness.vkey."""
    import uvicorn

    from strongroom.ledger.witness import Witness
    from strongroom.server.witness_app import create_witness_app
    from strongroom.tls import server_options

    tls = server_options(tls_cert, tls_key, tls_client_ca)
    witness = Witness.open(data, name, log_vkey)
    console.print(f"witness {witness.signer.verifier.vkey} on {'https' if tls else 'http'}://{host}:{port}")
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning", **tls)


def register(app: typer.Typer) -> None:
    app.add_typer(witness_app, name="witness")
