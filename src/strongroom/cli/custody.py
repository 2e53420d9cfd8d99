"""``strongroom request | approvals | approve | deny | load``: the people and hosts of a key release."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from strongroom.cli.common import JsonOption, console, print_json
from strongroom.custody.admin import pending_query
from strongroom.custody.client import CustodyClient
from strongroom.custody.errors import CustodyError
from strongroom.custody.host import HostSession
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.session_file import load_session, save_session
from strongroom.signing import Signer

ServerOption = Annotated[str, typer.Option("--server", help="Strongroom server URL.")]
PersonOption = Annotated[str, typer.Option("--person", help="Your person id in the registry.")]
KeyOption = Annotated[Path, typer.Option("--key", help="Your Ed25519 private key (PEM).")]
DEFAULT_SERVER = "http://127.0.0.1:8750"


def request(
    model_id: Annotated[str, typer.Argument(help="Model id to load (blake3:<hex>).")],
    person: PersonOption,
    key: KeyOption,
    host_id: Annotated[str, typer.Option("--host-id", help="This host's name.")],
    host_key: Annotated[Path, typer.Option("--host-key", help="This host's Ed25519 identity key (PEM).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why the model is needed (logged).")],
    session: Annotated[Path | None, typer.Option("--session", help="Where to keep the host session.")] = None,
    hours: Annotated[float, typer.Option(help="Request lifetime in hours (at most 24).")] = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Ask for a model's data key for this host; approvers then decide."""
    host = HostSession(host_id, Signer.load(host_key))
    payload = host.request_payload(model_id, purpose, person, lifetime=timedelta(hours=hours))
    message = SignedMessage.sign(payload, Signer.load(key))
    client = CustodyClient(server)
    request_id = client.submit_request(message)
    target = session or Path(f"{request_id[:16]}.session")
    save_session(target, host, request_id, model_id, server)
    if json_out:
        print_json({"request_id": request_id, "session": str(target), "expires_at": payload["expires_at"]})
    else:
        console.print(f"request [bold]{request_id}[/] submitted; host session saved to {target}")


def approvals(
    person: PersonOption, key: KeyOption, server: ServerOption = DEFAULT_SERVER, json_out: JsonOption = False
) -> None:
    """Pending requests you may decide on."""
    pending = CustodyClient(server).pending(pending_query(person, Signer.load(key)))
    if json_out:
        print_json({"pending": pending})
        return
    table = Table("request", "model", "requester", "host", "purpose", "expires")
    for item in pending:
        p = item["request"]["payload"]
        table.add_row(
            item["request_id"][:16],
            p["model_id"][:23],
            p["requester"],
            p["host"]["host_id"],
            p["purpose"],
            p["expires_at"],
        )
    console.print(table if pending else "no pending requests")


def _decide(
    request_id: str,
    person: str,
    key: Path,
    server: str,
    decision: str,
    reason: str | None,
    custodian_key: Path | None = None,
) -> dict[str, Any]:
    client = CustodyClient(server)
    signer = Signer.load(key)
    matches = [p for p in client.pending(pending_query(person, signer)) if p["request_id"].startswith(request_id)]
    if len(matches) != 1:
        raise CustodyError(f"no single pending request starting with {request_id!r} for {person}")
    stored = SignedMessage.from_json(matches[0]["request"], "pending request")
    share = None
    if custodian_key is not None and decision == "approve":
        from strongroom.cli.keys import CUSTODIAN_PASSPHRASE_ENV
        from strongroom.custody.custodian import share_for_request
        from strongroom.keys.hpke import load_private_key
        from strongroom.keys.provider import WrappedKey

        if "key" not in matches[0]:
            raise CustodyError("this model's key is not split among custodians: approve without --custodian-key")
        secret = os.environ.get(CUSTODIAN_PASSPHRASE_ENV)
        custodian = load_private_key(custodian_key, secret.encode() if secret else None)
        share = share_for_request(stored, WrappedKey.from_json(matches[0]["key"]), custodian)
    approval = SignedMessage.sign(
        new_approval(request=stored, approver=person, decision=decision, reason=reason, share=share), signer
    )
    count = client.approve(stored.digest, approval)
    return {"request_id": stored.digest, "decision": decision, "approvals": count}


def approve(
    request_id: Annotated[str, typer.Argument(help="Request id (a unique prefix is enough).")],
    person: PersonOption,
    key: KeyOption,
    reason: Annotated[str | None, typer.Option(help="Note for the log.")] = None,
    custodian_key: Annotated[
        Path | None, typer.Option("--custodian-key", help="Your X25519 custodian key: send your key share.")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Approve a pending request (signed over its exact content); custodians of a split key add their share."""
    result = _decide(request_id, person, key, server, "approve", reason, custodian_key)
    print_json(result) if json_out else console.print(
        f"approved {result['request_id'][:16]} ({result['approvals']} decision(s) recorded)"
    )


def deny(
    request_id: Annotated[str, typer.Argument(help="Request id (a unique prefix is enough).")],
    person: PersonOption,
    key: KeyOption,
    reason: Annotated[str | None, typer.Option(help="Why (logged).")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Deny a pending request: one denial by an active approver blocks the release."""
    result = _decide(request_id, person, key, server, "deny", reason)
    print_json(result) if json_out else console.print(f"denied {result['request_id'][:16]}")


def load(
    session: Annotated[Path, typer.Argument(help="Host session file from 'strongroom request'.")],
    sealed: Annotated[Path, typer.Option("--sealed", help="The sealed model directory.")],
    host_key: Annotated[Path, typer.Option("--host-key", help="This host's Ed25519 identity key (PEM).")],
    json_out: JsonOption = False,
) -> None:
    """Fetch the released key, load the sealed model into memory with verification, and report the load."""
    from strongroom.custody.loading import load_released

    host, header = load_session(session, Signer.load(host_key))
    client = CustodyClient(header["server"])
    _, summary = load_released(client, host, header["request_id"], sealed)
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"loaded {summary['tensors']} tensors of {summary['model_id']} into memory; "
            f"logged as entry {summary['loaded_entry']['index']}"
        )


def register_model(
    sealed: Annotated[Path, typer.Argument(help="The sealed model directory (its key reference is read).")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model id from 'strongroom manifest'.")],
    officer_key: Annotated[Path, typer.Option("--officer-key", help="Security officer's private key (PEM).")],
    required_tier: Annotated[int, typer.Option(min=1, max=5, help="SenL tier needed to request it.")] = 4,
    approvals: Annotated[int, typer.Option(min=1, max=16, help="Distinct approvals needed.")] = 2,
    delay: Annotated[int, typer.Option(help="Seconds between request and release.")] = 0,
    provenance: Annotated[Path | None, typer.Option(help="JSON file: training run, hardware, site, controls.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Register a sealed model for custody: its release policy goes on the ledger."""
    import json

    from strongroom.custody.admin import model_registration
    from strongroom.custody.policy import ModelPolicy
    from strongroom.seal import SealedModel

    with SealedModel.inspect(sealed) as model:
        key = model.key
    details = json.loads(provenance.read_text()) if provenance else {}
    if not isinstance(details, dict):
        raise CustodyError(f"{provenance}: provenance must be a JSON object")
    policy = ModelPolicy(model_id, required_tier, approvals, delay)
    receipt = CustodyClient(server).register_model(model_registration(policy, key, details, Signer.load(officer_key)))
    if json_out:
        print_json({"model_id": model_id, "policy": policy.to_json(), "ledger": receipt})
    else:
        console.print(
            f"registered {model_id} (SenL-{required_tier}, {approvals} approvals); ledger entry {receipt['index']}"
        )


def register(app: typer.Typer) -> None:
    app.command("register")(register_model)
    app.command("request")(request)
    app.command("approvals")(approvals)
    app.command("approve")(approve)
    app.command("deny")(deny)
    app.command("load")(load)
