"""The CLI's error contract: how every way a command can end is shown at the terminal.

Whatever goes wrong (a usage error, a bad value, a missing extra, an interruption, a library error, a bug) ends
in exactly one ``error: ...`` line on stderr, sometimes followed by one ``hint: ...`` line, and a distinct exit
status. No traceback is printed unless ``--debug`` is given before the command (or ``STRONGROOM_DEBUG=1``).

=====  ===========================================================================
 exit  meaning
=====  ===========================================================================
 0     done (``strongroom`` or a command group alone prints its help)
 1     the command failed: a library error, a refusal, an OS error, a missing extra
 2     usage: unknown command or option, missing argument, bad value
 130   interrupted (Ctrl-C)
=====  ===========================================================================

A command may still end with its own status through ``typer.Exit`` (``diff`` exits 1 when models differ).
``run`` applies all of this to the whole Typer app, so a command added later inherits it.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

import typer
from rich.markup import escape

from strongroom.cli.common import err_console
from strongroom.cli.extras import MissingExtraError, extra_for_module
from strongroom.errors import StrongroomError

PROG = "strongroom"
DEBUG_ENV = "STRONGROOM_DEBUG"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """Click's exception base class as typer raises it: typer >= 0.22 bundles click as ``typer._click``;
    older typer raises the ``click`` package's own."""
    found: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as Bundled  # type: ignore[import-not-found,unused-ignore]

        found.append(Bundled)
    except ImportError:  # pragma: no cover - older typer
        pass
    try:
        from click import ClickException as Standalone  # type: ignore[import-not-found,unused-ignore]

        found.append(Standalone)
    except ImportError:
        pass
    return tuple(found)


def _abort_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [typer.Abort]
    try:
        from click.exceptions import Abort as Standalone  # type: ignore[import-not-found,unused-ignore]

        found.append(Standalone)
    except ImportError:
        pass
    return tuple(found)


CLICK_ERRORS = _click_exception_types()
ABORTS = _abort_types()


def say_error(message: str, hint: str | None = None) -> None:
    """The one ``error:`` line (and an optional ``hint:`` line) on stderr."""
    line = " ".join(message.split()) or "failed"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(' '.join(hint.split()))}", highlight=False, soft_wrap=True)


def debug_requested(args: Sequence[str]) -> bool:
    """``--debug`` among the options before the command, or STRONGROOM_DEBUG set to a true value."""
    if os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes"):
        return True
    for arg in args:
        if not arg.startswith("-") or arg == "--":
            return False
        if arg == "--debug":
            return True
    return False


class _Interrupts:
    """Remembers a Ctrl-C: typer turns KeyboardInterrupt into a silent exit status 130, which would otherwise
    be indistinguishable from a command that chose to exit 130."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def install(self) -> None:
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, self)
        except ValueError:  # not the main thread (tests calling run in a thread)
            pass


def usage_hint(ctx: Any) -> str | None:
    """``usage: strongroom seal [OPTIONS] SRC DST (--help for more)`` for the command that was parsing."""
    if ctx is None:
        return None
    try:
        usage = " ".join(ctx.get_usage().split())
    except Exception:  # pragma: no cover - a usage line is a courtesy
        return None
    if usage.lower().startswith("usage:"):
        usage = usage[len("usage:") :].strip()
    return f"usage: {usage}; '{ctx.command_path} --help' explains every option"


def usage_message(exc: BaseException) -> str:
    """Click's message, with the command it was for, in the contract's lower-case style."""
    param = getattr(exc, "param", None)
    if type(exc).__name__ == "MissingParameter" and param is not None:
        if getattr(param, "param_type_name", "") == "argument":
            message = f"missing argument {str(param.metavar or param.name).upper()}"
        else:
            message = f"missing option {'/'.join(param.opts)}"
    else:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(str(message).split()).rstrip(".")
    message = re.sub(r"(?<=: )Input should", "input should", message)
    message = message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", "") if ctx is not None else ""
    return f"{where}: {message}" if where else message


def report(exc: BaseException, debug: bool) -> int:
    """Show ``exc`` under the contract and return the exit status."""
    if debug and not isinstance(exc, typer.Exit | SystemExit):
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        say_error(str(code))
        return EXIT_FAILURE
    if isinstance(exc, KeyboardInterrupt):
        say_error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, CLICK_ERRORS):
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 0  # the help was printed when the error was built: a bare group asks for its help
        code = int(getattr(exc, "exit_code", EXIT_USAGE))
        if code == EXIT_USAGE:
            say_error(usage_message(exc), usage_hint(getattr(exc, "ctx", None)))
        else:  # FileError and plain ClickException: a failure, not a usage error
            say_error(usage_message(exc))
            code = EXIT_FAILURE
        return code
    if isinstance(exc, ABORTS):
        say_error("aborted")
        return EXIT_FAILURE
    if isinstance(exc, MissingExtraError):
        say_error(str(exc), exc.hint)
        return EXIT_FAILURE
    if isinstance(exc, StrongroomError):
        say_error(str(exc), getattr(exc, "hint", None))
        return EXIT_FAILURE
    if isinstance(exc, ModuleNotFoundError):
        extra = extra_for_module(exc.name)
        if extra is not None:
            missing = MissingExtraError(extra, "this command", exc.name or "?")
            say_error(str(missing), missing.hint)
        else:
            say_error(f"a Python module is missing: {exc.name or exc}", "reinstall: python3 -m pip install -e .")
        return EXIT_FAILURE
    if isinstance(exc, OSError):
        if exc.errno == errno.EPIPE:
            return EXIT_FAILURE  # the reader went away; nobody is left to tell
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(f"{where}{exc.strerror or exc}")
        return EXIT_FAILURE
    if isinstance(exc, EOFError):
        say_error("input ended before an answer was given")
        return EXIT_FAILURE
    if isinstance(exc, MemoryError):
        say_error("out of memory")
        return EXIT_FAILURE
    say_error(
        f"unexpected {type(exc).__name__}: {exc}" if str(exc) else f"unexpected {type(exc).__name__}",
        None if debug else f"this is a bug in Strongroom; '{PROG} --debug ...' shows where it happened",
    )
    return EXIT_FAILURE


def run(command: Any, args: Sequence[str] | None = None) -> int:
    """Run the click command built from the Typer app under the contract; returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(argv)
    interrupts = _Interrupts()
    interrupts.install()
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except BaseException as exc:  # the contract covers every way out
        return report(exc, debug)
    finally:
        _flush()
    if isinstance(result, int) and not isinstance(result, bool):
        if result == EXIT_INTERRUPTED and interrupts.seen:
            say_error("interrupted")
        return result
    return 0


def _flush() -> None:
    """Flush stdout now, so a closed pipe is reported here rather than at interpreter exit."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
