"""Entry point: builds the Typer app from each domain's module and runs it under the CLI's error contract
(``strongroom.cli.contract``: one ``error:`` line, exit 2 for usage, 1 for failures, 130 when interrupted)."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any

import typer

from strongroom import process
from strongroom.cli import admin as admin_cli
from strongroom.cli import attest as attest_cli
from strongroom.cli import custody as custody_cli
from strongroom.cli import demo as demo_cli
from strongroom.cli import egress as egress_cli
from strongroom.cli import geo as geo_cli
from strongroom.cli import hosts as hosts_cli
from strongroom.cli import incident as incident_cli
from strongroom.cli import init as init_cli
from strongroom.cli import keys as keys_cli
from strongroom.cli import ledger as ledger_cli
from strongroom.cli import manifest as manifest_cli
from strongroom.cli import meetings as meetings_cli
from strongroom.cli import people as people_cli
from strongroom.cli import seal as seal_cli
from strongroom.cli import serve as serve_cli
from strongroom.cli import style
from strongroom.cli import witness as witness_cli
from strongroom.cli.contract import run

app = typer.Typer(
    name="strongroom",
    help="Verifiable custody of AI model weights: seal, sign, log and release under quorum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from strongroom import __version__

        typer.echo(f"strongroom {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the Python traceback of an error too (for bug reports).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Verifiable custody of AI model weights: seal, sign, log and release under quorum.

    Every command ends an error in one 'error:' line on stderr: exit 2 for a usage error, 1 for a failure,
    130 when interrupted.
    """


demo_cli.register(app)
init_cli.register(app)
keys_cli.register(app)
seal_cli.register(app)
manifest_cli.register(app)
serve_cli.register(app)
witness_cli.register(app)
ledger_cli.register(app)
people_cli.register(app)
hosts_cli.register(app)
attest_cli.register(app)
admin_cli.register(app)
custody_cli.register(app)
meetings_cli.register(app)
geo_cli.register(app)
egress_cli.register(app)
incident_cli.register(app)


@functools.cache
def command() -> Any:
    """The click command the Typer app builds, its help in the usual style (every command, present and future);
    built once per process."""
    return style.polish(typer.main.get_command(app))


def main(args: list[str] | None = None) -> None:
    """Run the CLI under the error contract and exit with its status."""
    process.harden()  # commands hold keys: no core dumps, nothing dumpable
    process.take_secrets()  # and no child inherits a passphrase, PIN or token
    sys.exit(run(command(), args))


if __name__ == "__main__":
    main()
