"""Helpers shared by CLI modules: consoles, JSON output, key-provider options, one-line errors."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from strongroom.keys import LocalKeyring
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.provider import KeyProvider

console = Console()
err_console = Console(stderr=True)

PASSPHRASE_ENV = "STRONGROOM_PASSPHRASE"

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
KeysOption = Annotated[Path, typer.Option("--keys", help="Local key directory (from 'strongroom keys init').")]
KekFileOption = Annotated[
    Path | None, typer.Option("--kek-file", help="Read the KEK from this file instead of a passphrase.")
]


def print_json(value: Any) -> None:
    """Write JSON to stdout without rich markup, so pipes get exactly the data."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def read_passphrase(confirm: bool = False) -> str:
    """The passphrase from STRONGROOM_PASSPHRASE, else an interactive prompt."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise KeyProviderError(f"no passphrase: set {PASSPHRASE_ENV} or run interactively")
    first = getpass.getpass("Keyring passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise KeyProviderError("the passphrases do not match")
    return first


def open_provider(keys: Path, kek_file: Path | None = None) -> KeyProvider:
    """Open the local keyring in ``keys`` with its KEK file or passphrase."""
    record = LocalKeyring.read_record(keys)
    if record["protection"] == "kek-file":
        return LocalKeyring.open(keys, kek_file=kek_file)
    return LocalKeyring.open(keys, passphrase=read_passphrase())
