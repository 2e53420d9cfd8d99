"""``strongroom people ...``: clearance changes signed by a security officer, and standings."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.common import JsonOption, console, print_json
from strongroom.custody.admin import person_change
from strongroom.custody.client import CustodyClient
from strongroom.people import SignalKind, agreement_message
from strongroom.signing import Signer

people_app = typer.Typer(
    help="SenL clearance registry: enrol, vet, agreements, signals, standings.", no_args_is_help=True
)
ServerOption = Annotated[str, typer.Option("--server", help="Strongroom server URL.")]
OfficerOption = Annotated[Path, typer.Option("--officer-key", help="Security officer's private key (PEM).")]
DEFAULT_SERVER = "http://127.0.0.1:8750"


def _submit(change: dict[str, Any], officer_key: Path, server: str, json_out: bool) -> None:
    receipt = CustodyClient(server).change_person(person_change(change, Signer.load(officer_key)))
    if json_out:
        print_json({"change": change, "ledger": receipt})
    else:
        signal = f" (signal id {change['signal_id']})" if "signal_id" in change else ""
        console.print(f"{change['change']} {change['person']}{signal}: logged as ledger entry {receipt.get('index')}")


@people_app.command("enrol")
def enrol(
    person: Annotated[str, typer.Argument(help="Person id.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The person's Ed25519 public key (PEM).")],
    position: Annotated[str, typer.Option(help="Position title.")],
    tier: Annotated[int, typer.Option(min=1, max=5, help="SenL tier of the position (1-5).")],
    vetted_on: Annotated[str, typer.Option("--vetted-on", help="Date of the last vetting (YYYY-MM-DD).")],
    officer_key: OfficerOption,
    custodian: Annotated[bool, typer.Option(help="A SenL-5 custodian of the weights.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Enrol a person with an Ed25519 identity and a position."""
    _submit(
        {
            "change": "enrol",
            "person": person,
            "name": name,
            "public_key": public_key.read_text(),
            "position": position,
            "tier": tier,
            "custodian": custodian,
            "vetted_on": vetted_on,
        },
        officer_key,
        server,
        json_out,
    )


@people_app.command("position")
def position(
    person: str,
    title: Annotated[str, typer.Option("--title")],
    tier: Annotated[int, typer.Option(min=1, max=5)],
    officer_key: OfficerOption,
    custodian: bool = False,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Move a person to another position; a higher tier requires rescreening first."""
    _submit(
        {"change": "position", "person": person, "position": title, "tier": tier, "custodian": custodian},
        officer_key,
        server,
        json_out,
    )


@people_app.command("vetted")
def vetted(
    person: str,
    officer_key: OfficerOption,
    on: Annotated[str, typer.Option("--on")] = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record a completed (re)screening."""
    _submit(
        {"change": "vetted", "person": person, "vetted_on": on or date.today().isoformat()},
        officer_key,
        server,
        json_out,
    )


@people_app.command("agree")
def agree(
    person: str,
    agreement_file: Annotated[Path, typer.Option("--agreement-file")],
    key: Annotated[Path, typer.Option("--key", help="The person's own private key (they sign).")],
    officer_key: OfficerOption,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record the person's signature on an access agreement (identified by its SHA-256)."""
    agreement = "sha256:" + hashlib.sha256(agreement_file.read_bytes()).hexdigest()
    signature = base64.b64encode(Signer.load(key).sign(agreement_message(person, agreement))).decode()
    _submit(
        {"change": "agreement", "person": person, "agreement": agreement, "signature": signature},
        officer_key,
        server,
        json_out,
    )


@people_app.command("signal")
def signal(
    person: str,
    kind: Annotated[SignalKind, typer.Option("--kind")],
    officer_key: OfficerOption,
    detail: str = "",
    observed_on: Annotated[str, typer.Option("--observed-on")] = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record a continuous-evaluation signal: access is suspended until a reviewer clears it."""
    _submit(
        {
            "change": "signal",
            "person": person,
            "signal_id": "sig-" + secrets.token_hex(4),
            "kind": kind.value,
            "detail": detail,
            "observed_on": observed_on or date.today().isoformat(),
        },
        officer_key,
        server,
        json_out,
    )


@people_app.command("clear")
def clear(
    person: str,
    signal_id: str,
    reviewer: Annotated[str, typer.Option("--reviewer")],
    officer_key: OfficerOption,
    finding: str = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Clear a signal after review (the reviewer cannot be the person)."""
    _submit(
        {"change": "clear", "person": person, "signal_id": signal_id, "reviewer": reviewer, "finding": finding},
        officer_key,
        server,
        json_out,
    )


@people_app.command("offboard")
def offboard(
    person: str,
    officer_key: OfficerOption,
    reason: str = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Remove a person's access for good."""
    _submit({"change": "offboard", "person": person, "reason": reason}, officer_key, server, json_out)


@people_app.command("show")
def show(person: str, server: ServerOption = DEFAULT_SERVER, json_out: JsonOption = False) -> None:
    """A person's effective standing now."""
    standing = CustodyClient(server).standing(person)
    if json_out:
        print_json(standing)
        return
    state = f"SenL-{standing['effective_tier']}" if standing["effective_tier"] else "NO ACCESS"
    console.print(
        f"{person}: position tier SenL-{standing['tier']}, effective {state}"
        f"{' (custodian)' if standing['custodian'] else ''}"
    )
    for reason in standing["reasons"]:
        console.print(f"  - {reason}")


def register(app: typer.Typer) -> None:
    app.add_typer(people_app, name="people")
