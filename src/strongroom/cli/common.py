"""Helpers shared by CLI modules: consoles, JSON output, key-provider options, one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from strongroom import process
from strongroom.errors import StrongroomError
from strongroom.keys import factory
from strongroom.keys.errors import KeyProviderError, KeySettingsError
from strongroom.keys.provider import KeyProvider
from strongroom.keys.settings import KeySettings

# No automatic highlighting: ids, digests and byte counts are data, and rich would colour parts of them.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

PASSPHRASE_ENV = "STRONGROOM_PASSPHRASE"


class CommandError(StrongroomError):
    """A command's answer is a failure (a status check that finds nothing, say): one ``error:`` line, exit 1,
    and a ``hint:`` line when one helps."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
KEY_CONFIG_ENV = "STRONGROOM_KEY_CONFIG"


class ProviderChoice(StrEnum):
    """The key providers ``--key-provider`` accepts."""

    local = "local"
    pkcs11 = "pkcs11"
    openbao = "openbao"
    shamir = "shamir"


KeysOption = Annotated[Path | None, typer.Option("--keys", help="Local key directory (from 'strongroom keys init').")]
KekFileOption = Annotated[
    Path | None, typer.Option("--kek-file", help="Read the KEK from this file instead of a passphrase.")
]
KeyProviderOption = Annotated[
    ProviderChoice | None,
    typer.Option(
        "--key-provider",
        help="Where data keys are wrapped (default: the settings' provider, else local).",
        case_sensitive=False,
    ),
]
KeyConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--key-config",
        envvar=KEY_CONFIG_ENV,
        help="Key-provider settings file (TOML or JSON); STRONGROOM_* variables override it.",
    ),
]


class LazyProgress:
    """A rich progress display that appears only on a terminal, and only once work has begun: a command that
    refuses its input (validation, an existing destination, a bad header) refuses before any bar is drawn, and
    piped output never gets the blank line a stopped display leaves."""

    def __init__(self, description: str, total: int | None, *columns: Any, transient: bool, enabled: bool) -> None:
        from rich.progress import Progress

        self.enabled = enabled and console.is_terminal
        self._bar = Progress(*columns, console=console, transient=transient)
        self._task = self._bar.add_task(description, total=total)
        self._started = False

    def _start(self) -> None:
        if self.enabled and not self._started:
            self._started = True
            self._bar.start()

    def advance(self, n: int) -> None:
        if n > 0:
            self._start()
        if self._started:
            self._bar.advance(self._task, n)

    def describe(self, name: str) -> None:
        if self._started:
            self._bar.update(self._task, description=name)

    def stop(self) -> None:
        if self._started:
            self._bar.stop()


@contextlib.contextmanager
def lazy_progress(
    description: str, total: int | None, *columns: Any, transient: bool, enabled: bool
) -> Iterator[LazyProgress]:
    """``LazyProgress`` as a context manager that stops the display however the block ends."""
    bar = LazyProgress(description, total, *columns, transient=transient, enabled=enabled)
    try:
        yield bar
    finally:
        bar.stop()


def data_table(*headers: str, fold: tuple[str, ...] = (), title: str | None = None) -> Table:
    """A table that fits an 80-column terminal: a light frame, the columns named in ``fold`` wrap inside
    themselves (ids, names, digests), the others (numbers, times, types) never break."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left")
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header not in fold)
    return table


def short_id(value: str | None, width: int) -> str:
    """An id cut to ``width`` characters for a table, its algorithm prefix (``blake3:``) dropped."""
    if not value:
        return ""
    return value.partition(":")[2][:width] if ":" in value else value[:width]


def print_json(value: Any) -> None:
    """Write JSON to stdout without rich markup, so pipes get exactly the data."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def read_passphrase(confirm: bool = False) -> str:
    """The passphrase from STRONGROOM_PASSPHRASE, else an interactive prompt."""
    value = process.secret(PASSPHRASE_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise KeyProviderError(f"no passphrase: set {PASSPHRASE_ENV} or run interactively")
    first = getpass.getpass("Keyring passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise KeyProviderError("the passphrases do not match")
    return first


def key_settings(
    keys: Path | None = None,
    kek_file: Path | None = None,
    key_provider: ProviderChoice | str | None = None,
    key_config: Path | None = None,
) -> KeySettings:
    """Combine the CLI's key options, the settings file and the environment into one ``KeySettings``."""
    kind = key_provider.value if isinstance(key_provider, ProviderChoice) else key_provider
    if keys is not None or kek_file is not None:
        if kind not in (None, "local"):
            raise KeySettingsError(f"--keys and --kek-file are for the local provider, not {kind}")
        kind = "local"  # --keys names a local key directory, whatever the settings say
    settings = KeySettings.load(key_config, provider=kind)
    if keys is not None or kek_file is not None:
        local = dataclasses.replace(
            settings.local, keys=keys or settings.local.keys, kek_file=kek_file or settings.local.kek_file
        )
        settings = dataclasses.replace(settings, local=local)
    return settings


def open_provider(
    keys: Path | None = None,
    kek_file: Path | None = None,
    key_provider: ProviderChoice | str | None = None,
    key_config: Path | None = None,
) -> KeyProvider:
    """Open the key provider the options name: a local key directory, or any provider from settings."""
    settings = key_settings(keys, kek_file, key_provider, key_config)
    return factory.open_provider(settings, ask_passphrase=read_passphrase)


@contextlib.contextmanager
def provider_from_options(
    keys: Path | None = None,
    kek_file: Path | None = None,
    key_provider: ProviderChoice | str | None = None,
    key_config: Path | None = None,
) -> Iterator[KeyProvider]:
    """``open_provider`` as a context manager that closes the provider (HSM session, HTTP client, KEK)."""
    provider = open_provider(keys, kek_file, key_provider, key_config)
    try:
        yield provider
    finally:
        close = getattr(provider, "close", None)
        if callable(close):
            close()
