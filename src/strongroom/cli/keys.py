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


@keys_app.command("gen-signer")
def gen_signer(
    name: Annotated[Path, typer.Argument(help="Writes NAME.key (private, 0600) and NAME.pub.")],
    key_type: Annotated[str, typer.Option("--type", help="ecdsa-p256 (default) or ed25519.")] = "ecdsa-p256",
    json_out: JsonOption = False,
) -> None:
    """Generate a signing identity: ECDSA P-256 (what model-signing verifies) or Ed25519 (people, hosts)."""
    from strongroom.signing import Signer, SigningKeyError

    if key_type not in ("ecdsa-p256", "ed25519"):
        raise SigningKeyError(f"unknown key type {key_type!r} (ecdsa-p256 or ed25519)")
    private, public = name.with_name(name.name + ".key"), name.with_name(name.name + ".pub")
    if private.exists() or public.exists():
        raise SigningKeyError(f"{private} or {public} already exists")
    signer = Signer.generate(key_type)  # type: ignore[arg-type]
    signer.save(private, public)
    summary = {"private_key": str(private), "public_key": str(public), "type": key_type, "key_id": signer.key_id}
    if json_out:
        print_json(summary)
    else:
        console.print(f"wrote {private} and {public} ({key_type}, key id {signer.key_id[:16]})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
