"""Entry point: builds the Typer app from each domain's module and turns library errors into one line."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from strongroom import process
from strongroom.cli import admin as admin_cli
from strongroom.cli import custody as custody_cli
from strongroom.cli import demo as demo_cli
from strongroom.cli import egress as egress_cli
from strongroom.cli import geo as geo_cli
from strongroom.cli import hosts as hosts_cli
from strongroom.cli import incident as incident_cli
from strongroom.cli import keys as keys_cli
from strongroom.cli import ledger as ledger_cli
from strongroom.cli import manifest as manifest_cli
from strongroom.cli import meetings as meetings_cli
from strongroom.cli import people as people_cli
from strongroom.cli import seal as seal_cli
from strongroom.cli import serve as serve_cli
from strongroom.cli import witness as witness_cli
from strongroom.cli.common import err_console
from strongroom.errors import StrongroomError

app = typer.Typer(
    name="strongroom",
    help="Verifiable custody of AI model weights: seal, sign, log and release under quorum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
demo_cli.register(app)
keys_cli.register(app)
seal_cli.register(app)
manifest_cli.register(app)
serve_cli.register(app)
witness_cli.register(app)
ledger_cli.register(app)
people_cli.register(app)
hosts_cli.register(app)
admin_cli.register(app)
custody_cli.register(app)
meetings_cli.register(app)
geo_cli.register(app)
egress_cli.register(app)
incident_cli.register(app)


def main() -> None:
    """Run the CLI; a StrongroomError or OS error becomes one 'error:' line and exit status 1."""
    process.harden()  # commands hold keys: no core dumps, nothing dumpable
    process.take_secrets()  # and no child inherits a passphrase, PIN or token
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except StrongroomError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        text = escape(f"{where}{exc.strerror or exc}")
        err_console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[bold red]error:[/] interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[bold red]error:[/] aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
