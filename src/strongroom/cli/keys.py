"""``strongroom keys ...``: local key directories, provider checks, PKCS#11 KEKs and custodian key pairs."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom import process
from strongroom.atomic import write_atomic
from strongroom.cli.common import (
    JsonOption,
    KekFileOption,
    KeyConfigOption,
    KeyProviderOption,
    KeysOption,
    console,
    key_settings,
    print_json,
    provider_from_options,
    read_passphrase,
)
from strongroom.keys import LocalKeyring
from strongroom.keys.errors import KeyProviderError, KeySettingsError
from strongroom.keys.hpke import fingerprint, write_private_key, write_public_key
from strongroom.keys.provider import KeyBinding
from strongroom.memory import wipe

CUSTODIAN_PASSPHRASE_ENV = "STRONGROOM_CUSTODIAN_PASSPHRASE"

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


@keys_app.command("gen-token-signer")
def gen_token_signer(
    label: Annotated[str, typer.Option("--label", help="CKA_LABEL of the new key pair (the URI's object=).")],
    key_type: Annotated[
        str, typer.Option("--type", help="ed25519 (default; people, hosts) or ecdsa-p256.")
    ] = "ed25519",
    token: Annotated[
        str | None, typer.Option("--token", help="Token label (default: STRONGROOM_PKCS11_TOKEN_LABEL or settings).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the public key PEM (default: LABEL.pub).")
    ] = None,
    key_config: KeyConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Generate a signing key pair inside the PKCS#11 token (private half sensitive and non-extractable) and
    write its public key PEM for enrolment; module and PIN come from STRONGROOM_PKCS11_MODULE/_PIN or settings."""
    from strongroom.keys.pkcs11_signer import Pkcs11Uri, generate_token_signer, resolve_access
    from strongroom.signing import SigningKeyError

    if key_type not in ("ed25519", "ecdsa-p256"):
        raise SigningKeyError(f"unknown key type {key_type!r} (ed25519 or ecdsa-p256)")
    public = out or Path(f"{label}.pub")
    if public.exists():
        raise SigningKeyError(f"{public} already exists")
    access = resolve_access(Pkcs11Uri(token=token, object=label), config=key_config)
    with generate_token_signer(access, label, key_type) as signer:  # type: ignore[arg-type]
        write_atomic(public, signer.verifier.pem(), mode=0o644)
        summary = {
            "uri": signer.uri,
            "public_key": str(public),
            "type": key_type,
            "key_id": signer.key_id,
            "attributes": signer.attributes(),
        }
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"created {key_type} key {summary['uri']} (key id {signer.key_id[:16]}); public key {public}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )


@keys_app.command("show-signer")
def show_signer(
    ref: Annotated[str, typer.Argument(help="A private key file (PEM) or a pkcs11: URI.")],
    public_out: Annotated[
        Path | None, typer.Option("--public-out", help="Also write the public key PEM here (for enrolment).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Open a signing key (file or token) and show its type and key id; a token key's protection attributes."""
    from strongroom.signing import load_signer

    signer = load_signer(ref)
    summary: dict[str, object] = {"ref": ref, "type": signer.key_type, "key_id": signer.key_id}
    attributes = getattr(signer, "attributes", None)
    if callable(attributes):
        summary["attributes"] = attributes()
    if public_out is not None:
        write_atomic(public_out, signer.verifier.pem(), mode=0o644)
        summary["public_key"] = str(public_out)
    if json_out:
        print_json(summary)
    else:
        console.print(f"{ref}: {signer.key_type}, key id {signer.key_id}", soft_wrap=True, markup=False)


@keys_app.command("check")
def check(
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Open the configured key provider and round-trip one throwaway data key through it."""
    throwaway = KeyBinding(secrets.token_hex(16), None)  # a seal id no sealed file carries; no model
    with provider_from_options(keys, kek_file, key_provider, key_config) as provider:
        start = time.perf_counter()
        data_key, wrapped = provider.generate_data_key(throwaway)
        wrapped_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            try:
                again = provider.unwrap(wrapped)
                unwrap_note = "ok" if again == data_key else "MISMATCH"
                wipe(again)
            except KeyProviderError as exc:  # Shamir without local custodian keys cannot unwrap alone
                unwrap_note = f"not by this provider alone ({type(exc).__name__})"
            unwrap_s = time.perf_counter() - start
        finally:
            wipe(data_key)
    if unwrap_note == "MISMATCH":
        raise KeyProviderError(f"{provider.provider}:{provider.key_id} unwrapped a different key than it wrapped")
    summary = {
        "provider": provider.provider,
        "key_id": provider.key_id,
        "wrapped_bytes": len(wrapped.blob),
        "generate_ms": round(wrapped_s * 1000, 3),
        "unwrap": unwrap_note,
        "unwrap_ms": round(unwrap_s * 1000, 3),
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"{summary['provider']}:{summary['key_id']}: data key wrapped in {summary['generate_ms']} ms "
        f"({summary['wrapped_bytes']} bytes), unwrap {unwrap_note}"
    )


@keys_app.command("pkcs11-init")
def pkcs11_init(key_config: KeyConfigOption = None, json_out: JsonOption = False) -> None:
    """Generate the AES-256 KEK inside the PKCS#11 token named by the settings (non-extractable)."""
    from strongroom.keys.pkcs11 import Pkcs11Provider, create_kek

    settings = key_settings(key_provider="pkcs11", key_config=key_config)
    p = settings.pkcs11
    assert p is not None
    if p.pin is None:
        raise KeySettingsError(f"{settings.origin}: [pkcs11] no PIN: set STRONGROOM_PKCS11_PIN or pkcs11.pin_file")
    create_kek(p.module, p.token_label, p.pin.reveal(), p.key_label)
    with Pkcs11Provider(p.module, p.token_label, p.pin.reveal(), p.key_label, mechanism=p.mechanism) as provider:
        summary = {"provider": provider.provider, "key_id": provider.key_id, "attributes": provider.kek_attributes()}
    if json_out:
        print_json(summary)
    else:
        console.print(f"created non-extractable KEK [bold]{summary['key_id']}[/] in token {p.token_label!r}")


@keys_app.command("custodian-init")
def custodian_init(
    name: Annotated[str, typer.Argument(help="Custodian name (file stem).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write NAME.pem and NAME.pub.pem.")] = Path("."),
    json_out: JsonOption = False,
) -> None:
    """Create a custodian's X25519 key pair; the private key is encrypted under STRONGROOM_CUSTODIAN_PASSPHRASE."""
    if not name or "/" in name or name.startswith("."):
        raise KeyProviderError(f"custodian name {name!r} must be a plain file stem")
    private_path, public_path = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    for path in (private_path, public_path):
        if path.exists():
            raise KeyProviderError(f"{path}: already exists")
    directory.mkdir(parents=True, exist_ok=True)
    passphrase = process.secret(CUSTODIAN_PASSPHRASE_ENV)
    key = X25519PrivateKey.generate()
    write_private_key(private_path, key, passphrase.encode() if passphrase else None)
    write_public_key(public_path, key.public_key())
    summary = {
        "name": name,
        "private_key": str(private_path),
        "public_key": str(public_path),
        "fingerprint": fingerprint(key.public_key()),
        "encrypted": bool(passphrase),
    }
    if json_out:
        print_json(summary)
    else:
        note = "" if passphrase else f" [yellow](unencrypted: set {CUSTODIAN_PASSPHRASE_ENV} to protect it)[/]"
        console.print(f"custodian [bold]{name}[/] {summary['fingerprint']}: {public_path}, {private_path}{note}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
