"""``strongroom keys ...``: create and describe local key directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import JsonOption, KekFileOption, console, print_json, read_passphrase
from strongroom.keys import LocalKeyring

keys_app = typer.Typer(help="Key directories and signing keys.", no_args_is_help=True)


@keys_app.command("init")
def init(
    keydir: Annotated[Path, typer.Argument(help="Directory to create the keyring in.")],
    kek_file: KekFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a local keyring: a fresh KEK under a passphrase (STRONGROOM_PASSPHRASE) or a KEK file."""
    if kek_file is not None:
        ring = LocalKeyring.init(keydir, kek_file=kek_file)
    else:
        ring = LocalKeyring.init(keydir, passphrase=read_passphrase(confirm=True))
    summary = {
        "keydir": str(keydir),
        "provider": ring.provider,
        "key_id": ring.key_id,
        "protection": "kek-file" if kek_file else "scrypt",
    }
    ring.close()
    if json_out:
        print_json(summary)
    else:
        console.print(f"created keyring [bold]{summary['key_id']}[/] in {keydir} ({summary['protection']})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
