"""``strongroom admin ...``: officers' co-signed changes, and the options every administrative command shares.

Every command that changes who may get a key takes ``--officer-key`` (repeatable). With ``--out FILE`` the
co-signed change is written there for the next officer (``strongroom admin cosign FILE``), and
``strongroom admin submit FILE`` sends it; without ``--out`` it is sent at once. The server counts the
officers (``strongroom.custody.authority``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.atomic import write_atomic
from strongroom.cli.common import JsonOption, console, print_json
from strongroom.custody.admin import (
    Proposal,
    change_authority,
    change_landmark,
    change_policy,
    clear_egress_alarm,
    clear_location_alarm,
    enrol_appender,
    enrol_landmark,
    propose,
)
from strongroom.custody.client import CustodyClient
from strongroom.custody.details import check_openings
from strongroom.custody.errors import CustodyError
from strongroom.custody.policy import EgressRule, LocationRule, ModelPolicy
from strongroom.custody.protocol import AdminChange, AdminSubmission, Authority, Officer
from strongroom.signing import Verifier, load_signer

DEFAULT_SERVER = "http://127.0.0.1:8750"
ServerOption = Annotated[str, typer.Option("--server", help="Strongroom server URL.")]
OfficerKeys = Annotated[
    list[Path], typer.Option("--officer-key", help="An officer's private key (PEM) or pkcs11: URI; repeat for each.")
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Write the co-signed change here for other officers instead of sending it.")
]
HoursOption = Annotated[float, typer.Option("--hours", min=0.01, max=24, help="How long officers have to co-sign.")]

admin_app = typer.Typer(help="Co-sign and submit officers' administrative changes.", no_args_is_help=True)


def send_or_save(
    proposal: Proposal, officer_keys: list[Path], out: Path | None, server: str, json_out: bool, hours: float = 1.0
) -> None:
    """Sign ``proposal`` with every officer key given; save it for co-signing, or submit it."""
    from datetime import timedelta

    signed = propose(proposal, [load_signer(path) for path in officer_keys], timedelta(hours=hours))
    if out is not None:
        save(out, signed)
        count = len(signed.cosigned.signatures)
        result = {"saved": str(out), "action": proposal.action, "signers": count}
        print_json(result) if json_out else console.print(
            f"{proposal.action} signed by {count} officer(s); saved to {out} for co-signing (it holds the private "
            "details in clear: pass it only to officers)"
        )
        return
    report(CustodyClient(server).admin(signed), json_out)


def report(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
        return
    console.print(
        f"{result['action']} {result['subject']}: approved by {', '.join(result['officers'])}; "
        f"ledger entry {result['ledger']['index']}"
    )


def load(path: Path) -> tuple[AdminChange, AdminSubmission]:
    """A saved change, parsed, with its openings checked against its commitments."""
    try:
        submission = AdminSubmission.from_json(path.read_bytes(), str(path))
    except OSError as exc:
        raise CustodyError(f"{path}: cannot read: {exc.strerror}") from None
    change = AdminChange.parse(submission.cosigned)
    check_openings(change.action, change.change, submission.openings)
    return change, submission


def save(path: Path, signed: AdminSubmission) -> None:
    write_atomic(path, (json.dumps(signed.to_json(), indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


@admin_app.command("cosign")
def cosign(path: Annotated[Path, typer.Argument(help="A change saved with --out.")], officer_key: OfficerKeys) -> None:
    """Add your signature to a saved change (read it first: ``strongroom admin show``)."""
    change, signed = load(path)
    for key in officer_key:
        signed = signed.cosign(load_signer(key))
    save(path, signed)
    console.print(f"{change.action} {change.subject}: now signed by {len(signed.cosigned.signatures)} officer(s)")


@admin_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="A change saved with --out.")], json_out: JsonOption = False
) -> None:
    """What a saved change does, who signed it, and until when it can be submitted."""
    change, submission = load(path)
    if json_out:
        print_json({**submission.to_json(), "change_id": change.change_id})
        return
    console.print(f"[bold]{change.action}[/] {change.subject} (change {change.change_id[:16]})")
    console.print_json(json.dumps({**change.change, **{k: v["value"] for k, v in submission.openings.items()}}))
    console.print(
        f"expires {change.cosigned.payload['expires_at']}; "
        f"signed by keys: {', '.join(k[:16] for k in change.cosigned.signers)}"
    )


@admin_app.command("submit")
def submit(
    path: Annotated[Path, typer.Argument(help="A change saved with --out.")],
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Send a saved, co-signed change to the server."""
    report(CustodyClient(server).admin(load(path)[1]), json_out)


@admin_app.command("policy")
def policy(
    model_id: Annotated[str, typer.Argument(help="A registered model id.")],
    required_tier: Annotated[int, typer.Option(min=1, max=5, help="SenL tier needed to request it.")],
    officer_key: OfficerKeys,
    approvals: Annotated[int, typer.Option(min=1, max=16, help="Distinct approvals needed.")] = 2,
    delay: Annotated[int, typer.Option(min=0, help="Seconds between request and release.")] = 0,
    egress_max_age: Annotated[
        int | None,
        typer.Option(help="Require a host egress checkpoint at most this many seconds old (rules in, budget left)."),
    ] = None,
    country: Annotated[
        list[str] | None, typer.Option("--country", help="Require a fresh IN verdict for one of these; repeat.")
    ] = None,
    location_max_age: Annotated[int, typer.Option(help="How old (seconds) a location verdict may be.")] = 86_400,
    attestation: Annotated[
        bool, typer.Option("--attestation/--no-attestation", help="Release only to TPM-attested hosts.")
    ] = False,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Change a registered model's release policy."""
    egress = EgressRule(egress_max_age) if egress_max_age is not None else None
    location = LocationRule(tuple(sorted(set(country))), location_max_age) if country else None
    rules = ModelPolicy(model_id, required_tier, approvals, delay, egress, location, attestation)
    send_or_save(change_policy(rules), officer_key, out, server, json_out, hours)


@admin_app.command("egress-clear")
def egress_clear(
    host: Annotated[str, typer.Argument(help="The host whose egress alarm is cleared.")],
    alarm_id: Annotated[str, typer.Argument(help="The alarm's id (its egress.alarm entries name it).")],
    reason: Annotated[str, typer.Option(help="What the officers found.")],
    officer_key: OfficerKeys,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Clear an open egress alarm (threshold officers), so releases to the host can resume."""
    send_or_save(clear_egress_alarm(host, alarm_id, reason), officer_key, out, server, json_out, hours)


@admin_app.command("location-clear")
def location_clear(
    host: Annotated[str, typer.Argument(help="The host whose INCONSISTENT location verdict is cleared.")],
    verdict: Annotated[int, typer.Argument(min=0, help="The ledger index of that geo.verdict entry.")],
    reason: Annotated[str, typer.Option(help="What the officers found.")],
    officer_key: OfficerKeys,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Clear a host's INCONSISTENT location verdict, an alarm (threshold officers), so IN verdicts count again."""
    send_or_save(clear_location_alarm(host, verdict, reason), officer_key, out, server, json_out, hours)


@admin_app.command("appender")
def appender(
    name: Annotated[str, typer.Argument(help="The appender's id (never reused).")],
    public_key: Annotated[Path, typer.Option("--public-key", help="Its public key (PEM).")],
    entry_type: Annotated[
        list[str], typer.Option("--type", help="egress.checkpoint, egress.alarm, egress.exhausted or geo.verdict.")
    ],
    officer_key: OfficerKeys,
    host: Annotated[str | None, typer.Option(help="For an egress gateway: the one host it speaks for.")] = None,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Enrol a gateway or location verifier key whose entries custody will count (threshold officers)."""
    proposal = enrol_appender(name, public_key.read_text(), entry_type, host)
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@admin_app.command("landmark")
def landmark(
    change: Annotated[str, typer.Argument(help="enrol (threshold), clear (threshold), flag or retire (one).")],
    subject: Annotated[str, typer.Argument(help="enrol: the 'geo landmark enrol --json' file; else the id.")],
    officer_key: OfficerKeys,
    reason: Annotated[str, typer.Option(help="Why (flag, retire, clear).")] = "",
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Enrol a landmark, or flag, clear or retire one (geo.landmark, written by the custody service)."""
    if change == "enrol":
        body = json.loads(Path(subject).read_text())
        if not isinstance(body, dict):
            raise CustodyError(f"{subject}: not a landmark enrolment body")
        proposal = enrol_landmark(body)
    elif change in ("flag", "clear", "retire"):
        proposal = change_landmark(subject, change, reason)
    else:
        raise CustodyError("landmark change is enrol, flag, clear or retire")
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@admin_app.command("authority")
def authority(
    officer: Annotated[list[str], typer.Option("--officer", help="NAME=PUBLIC_KEY.pem of each officer (repeatable).")],
    threshold: Annotated[int, typer.Option(min=1, help="Officers who must co-sign a change that grants access.")],
    officer_key: OfficerKeys,
    agreement: Annotated[
        Path | None, typer.Option("--agreement", help="The access agreement everyone must have signed.")
    ] = None,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Replace the officer set, the co-signing threshold and the required access agreement."""
    officers = []
    for item in officer:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise CustodyError(f"--officer {item!r}: expected NAME=PUBLIC_KEY.pem")
        officers.append(Officer(name, Verifier.load(Path(path))))
    digest = agreement_digest(agreement) if agreement else None
    send_or_save(
        change_authority(Authority(tuple(officers), threshold, digest)), officer_key, out, server, json_out, hours
    )


def agreement_digest(path: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
