"""``strongroom people ...``: clearance changes co-signed by security officers, and standings."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.admin import (
    DEFAULT_SERVER,
    HoursOption,
    OfficerKeys,
    OutOption,
    ServerOption,
    agreement_digest,
    send_or_save,
)
from strongroom.cli.common import JsonOption, console, print_json
from strongroom.custody import admin
from strongroom.custody.client import CustodyClient
from strongroom.custody.errors import CustodyError
from strongroom.people import SignalKind
from strongroom.signing import load_signer

people_app = typer.Typer(
    help="SenL clearance registry: enrol, vet, agreements, signals, standings.", no_args_is_help=True
)


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value) if value else date.today()
    except ValueError:
        raise CustodyError(f"{option}: {value!r} is not a date like 2026-01-31") from None


@people_app.command("enrol")
def enrol(
    person: Annotated[str, typer.Argument(help="Person id.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The person's Ed25519 public key (PEM).")],
    position: Annotated[str, typer.Option(help="Position title.")],
    tier: Annotated[int, typer.Option(min=1, max=5, help="SenL tier of the position (1-5).")],
    vetted_on: Annotated[str, typer.Option("--vetted-on", help="Date of the last vetting (YYYY-MM-DD).")],
    officer_key: OfficerKeys,
    custodian: Annotated[bool, typer.Option(help="A SenL-5 custodian of the weights.")] = False,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Enrol a person with an Ed25519 identity and a position (two officers)."""
    proposal = admin.enrol_person(
        person,
        name=name,
        public_key=public_key.read_text(),
        position=position,
        tier=tier,
        custodian=custodian,
        vetted_on=_date(vetted_on, "--vetted-on"),
    )
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@people_app.command("position")
def position(
    person: str,
    title: Annotated[str, typer.Option("--title")],
    tier: Annotated[int, typer.Option(min=1, max=5)],
    officer_key: OfficerKeys,
    custodian: bool = False,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Move a person to another position; a higher tier requires rescreening first (two officers)."""
    proposal = admin.change_position(person, position=title, tier=tier, custodian=custodian)
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@people_app.command("vetted")
def vetted(
    person: str,
    officer_key: OfficerKeys,
    on: Annotated[str, typer.Option("--on", help="Date of the screening (default today).")] = "",
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record a completed (re)screening (two officers)."""
    send_or_save(admin.record_vetting(person, _date(on, "--on")), officer_key, out, server, json_out, hours)


@people_app.command("agree")
def agree(
    person: str,
    agreement_file: Annotated[Path, typer.Option("--agreement-file")],
    key: Annotated[Path, typer.Option("--key", help="The person's own private key (they sign).")],
    officer_key: OfficerKeys,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record the person's signature on an access agreement (identified by its SHA-256; two officers)."""
    proposal = admin.record_agreement(person, agreement_digest(agreement_file), load_signer(key))
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@people_app.command("signal")
def signal(
    person: str,
    kind: Annotated[SignalKind, typer.Option("--kind")],
    officer_key: OfficerKeys,
    detail: str = "",
    observed_on: Annotated[str, typer.Option("--observed-on")] = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Record a continuous-evaluation signal: access is suspended until it is cleared (one officer)."""
    proposal = admin.raise_signal(person, kind, detail=detail, observed_on=_date(observed_on, "--observed-on"))
    send_or_save(proposal, officer_key, None, server, json_out)
    if not json_out:
        console.print(f"signal id {proposal.change['signal_id']} (a reviewer clears it with 'people clear')")


@people_app.command("clear")
def clear(
    person: str,
    signal_id: str,
    reviewer: Annotated[str, typer.Option("--reviewer")],
    officer_key: OfficerKeys,
    finding: str = "",
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Clear a signal after review (the reviewer cannot be the person; two officers)."""
    proposal = admin.clear_signal(person, signal_id, reviewer=reviewer, finding=finding)
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@people_app.command("offboard")
def offboard(
    person: str,
    officer_key: OfficerKeys,
    reason: str = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Remove a person's access for good (one officer)."""
    send_or_save(admin.offboard(person, reason), officer_key, None, server, json_out)


@people_app.command("show")
def show(
    person: str,
    key: Annotated[Path | None, typer.Option("--key", help="Your own key (with --as if you are not PERSON).")] = None,
    reader: Annotated[str | None, typer.Option("--as", help="Your person id (default: PERSON).")] = None,
    officer_key: Annotated[Path | None, typer.Option("--officer-key", help="An officer's key: read anyone.")] = None,
    details: Annotated[
        bool, typer.Option(help="Also the private details (officers), checked against the log.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """A person's effective standing now (reads are signed: yourself, or an officer)."""
    from strongroom.custody.protocol import OFFICER_READER, new_read_query

    if (key is None) == (officer_key is None):
        raise CustodyError("give --key (your own standing) or --officer-key")
    if key is not None:
        who, signer = reader or person, load_signer(key)
    else:
        who, signer = OFFICER_READER, load_signer(officer_key)  # type: ignore[arg-type]
    client = CustodyClient(server)
    standing = client.read(new_read_query(who, f"person:{person}", signer))
    if details:
        standing["details"] = client.read(new_read_query(who, f"details:{person}", signer))["details"]
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
    for detail in standing.get("details", []):
        console.print(f"  {detail['field']}: {detail['value']} (entry {detail['ledger_index']})")


def register(app: typer.Typer) -> None:
    app.add_typer(people_app, name="people")
