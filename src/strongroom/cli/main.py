"""Entry point: builds the Typer app from each domain's module and turns library errors into one line."""

from __future__ import annotations

import sys

import typer

from strongroom.cli import keys as keys_cli
from strongroom.cli import meetings as meetings_cli
from strongroom.cli import seal as seal_cli
from strongroom.cli.common import err_console
from strongroom.errors import StrongroomError

app = typer.Typer(
    name="strongroom",
    help="Verifiable custody of AI model weights: seal, sign, log and release under quorum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_cli.register(app)
seal_cli.register(app)
meetings_cli.register(app)


def main() -> None:
    """Run the CLI; a StrongroomError or OS error becomes one 'error:' line and exit status 1."""
    try:
        app(standalone_mode=False)
    except StrongroomError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True)
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
