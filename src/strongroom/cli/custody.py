"""``strongroom register | request | approvals | approve | deny | load``: models, people and hosts of a release."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from strongroom import process
from strongroom.cli.admin import DEFAULT_SERVER, HoursOption, OfficerKeys, OutOption, ServerOption, send_or_save
from strongroom.cli.common import JsonOption, console, data_table, print_json, short_id
from strongroom.cli.keys import CUSTODIAN_PASSPHRASE_ENV
from strongroom.custody.admin import register_model
from strongroom.custody.approver import Approver
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.errors import CustodyError
from strongroom.custody.host import HostSession
from strongroom.custody.policy import ModelPolicy
from strongroom.custody.session_file import load_session, save_session
from strongroom.signing import load_signer

PersonOption = Annotated[str, typer.Option("--person", help="Your person id in the registry.")]
KeyOption = Annotated[Path, typer.Option("--key", help="Your Ed25519 private key (PEM) or pkcs11: URI.")]


def request(
    model_id: Annotated[str, typer.Argument(help="Model id to load (blake3:<hex>).")],
    person: PersonOption,
    key: KeyOption,
    host_id: Annotated[str, typer.Option("--host-id", help="This host's enrolled id.")],
    host_key: Annotated[Path, typer.Option("--host-key", help="This host's Ed25519 identity key (PEM).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why the model is needed (logged).")],
    session: Annotated[Path | None, typer.Option("--session", help="Where to keep the host session.")] = None,
    hours: Annotated[float, typer.Option(help="Request lifetime in hours (at most 24).")] = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Ask for a model's data key for this enrolled host; approvers then decide."""
    host = HostSession(host_id, load_signer(host_key))
    payload = host.request_payload(model_id, purpose, person, lifetime=timedelta(hours=hours))
    message = SignedMessage.sign(payload, load_signer(key))
    request_id = CustodyClient(server).submit_request(message)
    target = session or Path(f"{request_id[:16]}.session")
    save_session(target, host, request_id, model_id, server)
    if json_out:
        print_json({"request_id": request_id, "session": str(target), "expires_at": payload["expires_at"]})
    else:
        console.print(f"request [bold]{request_id}[/] submitted; host session saved to {target}")


def approvals(
    person: PersonOption, key: KeyOption, server: ServerOption = DEFAULT_SERVER, json_out: JsonOption = False
) -> None:
    """Pending requests you may decide on, with the host each would go to."""
    pending = Approver(CustodyClient(server), person, load_signer(key)).pending()
    if json_out:
        print_json(
            {
                "pending": [
                    {
                        "request_id": p.request_id,
                        "received_at": p.received_at,
                        "request": p.request.signed.to_json(),
                        "host": p.host,
                    }
                    for p in pending
                ]
            }
        )
        return
    table = data_table(
        "request", "model id", "requester", "host", "host key", "purpose", "expires",
        fold=("model id", "requester", "host", "host key", "purpose"),
    )  # fmt: skip
    for p in pending:
        table.add_row(
            p.request_id[:16],
            short_id(p.request.model_id, 16),
            p.request.requester,
            f"{p.host['name']} ({p.host['site']})",
            p.host["fingerprint"],
            p.request.purpose,
            p.request.signed.payload["expires_at"],
        )
    console.print(table if pending else "no pending requests")


def approve(
    request_id: Annotated[str, typer.Argument(help="Request id (a unique prefix is enough).")],
    person: PersonOption,
    key: KeyOption,
    reason: Annotated[str | None, typer.Option(help="Note for the log.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Approve a pending request, signed over its exact content (custodians of a split key deliver their
    share afterwards, once the release is logged: 'strongroom deliver')."""
    approver = Approver(CustodyClient(server), person, load_signer(key))
    pending = approver.find(request_id)
    count = approver.decide(pending, "approve", reason)
    result = {"request_id": pending.request_id, "decision": "approve", "approvals": count}
    print_json(result) if json_out else console.print(
        f"approved {pending.request_id[:16]} for {pending.host['name']} ({count} decision(s) recorded)"
    )


def deliver(
    person: PersonOption,
    key: KeyOption,
    custodian_key: Annotated[Path, typer.Option("--custodian-key", help="Your X25519 custodian key (PEM).")],
    log_key: Annotated[str, typer.Option("--log-key", help="The ledger's verifier key (its log.vkey), pinned.")],
    state: Annotated[Path, typer.Option("--state", help="Your audit state file (consistency across runs).")],
    witness_key: Annotated[list[str] | None, typer.Option("--witness-key", help="Witness vkey (repeatable).")] = None,
    no_witness: Annotated[bool, typer.Option("--no-witness", help="Accept checkpoints no witness cosigned.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """As a custodian: deliver your key share for every logged release of a key you hold a share of, after
    checking each release entry against the log's signed checkpoint."""
    from strongroom.custody.approver import Custodian
    from strongroom.keys.hpke import load_private_key
    from strongroom.ledger.client import LedgerClient
    from strongroom.ledger.note import NoteVerifier

    secret = process.secret(CUSTODIAN_PASSPHRASE_ENV)
    vkey = Path(log_key).read_text().strip() if Path(log_key).is_file() else log_key
    witnesses = [NoteVerifier.from_vkey(v) for v in witness_key or []]
    custodian = Custodian(
        CustodyClient(server),
        LedgerClient(server),
        person,
        load_signer(key),
        load_private_key(custodian_key, secret.encode() if secret else None),
        state,
        vkey,
        witnesses,
        0 if no_witness else max(1, len(witnesses)),
    )
    delivered = custodian.deliver_all()
    if json_out:
        print_json({"delivered": [{"request_id": r, "shares": n} for r, n in delivered]})
        return
    for request_id, shares in delivered:
        console.print(f"share delivered for release {request_id[:16]} ({shares} share(s) now with the host)")
    if not delivered:
        console.print("no logged release needs your share")


def deny(
    request_id: Annotated[str, typer.Argument(help="Request id (a unique prefix is enough).")],
    person: PersonOption,
    key: KeyOption,
    reason: Annotated[str | None, typer.Option(help="Why (logged).")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Deny a pending request: one denial by an active approver blocks the release."""
    approver = Approver(CustodyClient(server), person, load_signer(key))
    pending = approver.find(request_id)
    count = approver.decide(pending, "deny", reason)
    result = {"request_id": pending.request_id, "decision": "deny", "approvals": count}
    print_json(result) if json_out else console.print(f"denied {pending.request_id[:16]}")


def load(
    session: Annotated[Path, typer.Argument(help="Host session file from 'strongroom request'.")],
    sealed: Annotated[Path, typer.Option("--sealed", help="The sealed model directory.")],
    host_key: Annotated[Path, typer.Option("--host-key", help="This host's Ed25519 identity key (PEM).")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for custodians' shares of a split key (delivered after logging).")
    ] = 0.0,
    tcti: Annotated[
        str | None, typer.Option("--tcti", help="This host's TPM (an attested host: quotes, TPM-bound key).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Fetch the released key, load the sealed model into memory with verification, and report the load.
    With --tcti the fetch and the load report carry TPM quotes and a TPM-bound key is unsealed in the TPM."""
    import contextlib

    from strongroom.custody.loading import load_released

    host, header = load_session(session, load_signer(host_key))
    client = CustodyClient(header["server"])
    with contextlib.ExitStack() as stack:
        if tcti is not None:
            from strongroom.attest.host import HostTpm

            host.tpm = stack.enter_context(HostTpm(tcti))
        _, summary = load_released(client, host, header["request_id"], sealed, wait=wait)
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"loaded {summary['tensors']} tensors of {summary['model_id']} into memory; "
            f"logged as entry {summary['loaded_entry']['index']}"
        )


def register_sealed(
    sealed: Annotated[Path, typer.Argument(help="The sealed model directory (its bound key reference is read).")],
    officer_key: OfficerKeys,
    model_id: Annotated[
        str | None, typer.Option("--model-id", help="Expected model id (checked against the key's binding).")
    ] = None,
    required_tier: Annotated[int, typer.Option(min=1, max=5, help="SenL tier needed to request it.")] = 4,
    approvals: Annotated[int, typer.Option(min=1, max=16, help="Distinct approvals needed.")] = 2,
    delay: Annotated[int, typer.Option(min=0, help="Seconds between request and release.")] = 0,
    provenance: Annotated[Path | None, typer.Option(help="JSON file: training run, hardware, site, controls.")] = None,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Register a sealed model for custody (two officers): its bound key and release policy go on the ledger."""
    from strongroom.seal import SealedModel

    with SealedModel.inspect(sealed) as model:
        key = model.key
    bound = key.binding.model_id
    if bound is None:
        raise CustodyError(f"{sealed}: its data key is bound to no model id; seal it with 'strongroom seal'")
    if model_id is not None and model_id != bound:
        raise CustodyError(f"{sealed}: its data key is bound to {bound}, not {model_id}")
    details = json.loads(provenance.read_text()) if provenance else {}
    if not isinstance(details, dict):
        raise CustodyError(f"{provenance}: provenance must be a JSON object")
    proposal = register_model(ModelPolicy(bound, required_tier, approvals, delay), key, details)
    send_or_save(proposal, officer_key, out, server, json_out, hours)


def register(app: typer.Typer) -> None:
    app.command("register")(register_sealed)
    app.command("request")(request)
    app.command("approvals")(approvals)
    app.command("approve")(approve)
    app.command("deny")(deny)
    app.command("deliver")(deliver)
    app.command("load")(load)
