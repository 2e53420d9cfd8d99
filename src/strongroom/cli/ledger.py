"""``strongroom ledger append | prove | show | verify``: write to and audit a ledger over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import JsonOption, console, data_table, print_json, short_id
from strongroom.custody.audit import audit_custody
from strongroom.errors import StrongroomError
from strongroom.ledger import merkle
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.entries import make_entry
from strongroom.ledger.errors import EntryError
from strongroom.ledger.note import COSIGNATURE_V1, NoteVerifier, open_note
from strongroom.signing import load_signer


class CustodyAuditError(StrongroomError):
    """Replaying custody found entries the authority model refuses."""


ledger_app = typer.Typer(help="Append to, prove and audit a transparency ledger.", no_args_is_help=True)
UrlArgument = Annotated[str, typer.Argument(help="Ledger URL, e.g. http://127.0.0.1:8750")]


@ledger_app.command("append")
def append(
    url: UrlArgument,
    entry_type: Annotated[str, typer.Option("--type", help="Entry type, e.g. model.evaluated.")],
    body: Annotated[Path, typer.Option("--body", help="JSON file with the entry body.")],
    signer_key: Annotated[Path, typer.Option("--signer-key", help="Authorised appender's private key (PEM).")],
    json_out: JsonOption = False,
) -> None:
    """Sign an entry and append it; prints its index and leaf hash."""
    try:
        value = json.loads(body.read_bytes())
    except ValueError:
        raise EntryError(f"{body}: not valid JSON") from None
    receipt = LedgerClient(url).append(make_entry(entry_type, value, load_signer(signer_key)))
    print_json(receipt) if json_out else console.print(
        f"appended as index {receipt['index']}, leaf {receipt['leaf_hash']}"
    )


@ledger_app.command("prove")
def prove(url: UrlArgument, index: Annotated[int, typer.Option("--index")], json_out: JsonOption = False) -> None:
    """Fetch and check an inclusion proof for one entry against the current signed checkpoint."""
    client = LedgerClient(url)
    verifier = NoteVerifier.from_vkey(client.vkey())
    text, _ = open_note(client.checkpoint_note(), verifier)
    checkpoint = Checkpoint.parse(text)
    leaf, proof = client.inclusion(index, checkpoint.size)
    merkle.verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root)
    result = {
        "index": index,
        "size": checkpoint.size,
        "root": checkpoint.root.hex(),
        "leaf_hash": leaf.hex(),
        "proof": [h.hex() for h in proof],
        "verified": True,
    }
    print_json(result) if json_out else console.print(
        f"entry {index} is included in {checkpoint.origin} at size {checkpoint.size} ({len(proof)} hashes)"
    )


@ledger_app.command("show")
def show(
    url: UrlArgument,
    entry_type: Annotated[str, typer.Option("--type")] = "",
    model_id: Annotated[str, typer.Option("--model-id")] = "",
    person: Annotated[str, typer.Option("--person")] = "",
    since: Annotated[str, typer.Option(help="Earliest time, 2026-01-31T00:00:00Z")] = "",
    until: Annotated[str, typer.Option(help="Latest time")] = "",
    json_out: JsonOption = False,
) -> None:
    """List entries, filtered by type, model id, person and time."""
    found = LedgerClient(url).query(type=entry_type, model_id=model_id, person=person, since=since, until=until)
    if json_out:
        print_json([{"index": i, "type": e.type, "time": e.time, "signer": e.signer, "body": e.body} for i, e in found])
        return
    if not found:
        console.print("no entries match")
        return
    wide = console.width >= 110
    table = data_table("index", "time", "type", "model id", "person", "signer", fold=("model id", "person"))
    for i, e in found:
        model = (e.model_id or "")[:23] if wide else short_id(e.model_id, 12)
        table.add_row(str(i), e.time, e.type, model, e.person or "", e.signer[: 12 if wide else 8])
    console.print(table)


@ledger_app.command("verify")
def verify(
    url: UrlArgument,
    state: Annotated[Path, typer.Option("--state", help="Auditor state: pinned key and last checkpoint.")],
    witness_key: Annotated[list[str] | None, typer.Option("--witness-key", help="Witness vkey (repeatable).")] = None,
    min_witnesses: Annotated[int, typer.Option(help="Cosignatures required (default: all given).")] = -1,
    no_witness: Annotated[
        bool,
        typer.Option(
            "--no-witness",
            help="Accept a checkpoint no witness cosigned (a fresh auditor then cannot see a rolled-back log).",
        ),
    ] = False,
    log_key: Annotated[str | None, typer.Option("--log-key", help="Pin this log vkey instead of TOFU.")] = None,
    index: Annotated[list[int] | None, typer.Option("--index", help="Also prove this entry (repeatable).")] = None,
    full: Annotated[bool, typer.Option(help="Download every entry, re-hash the tree, check every signature.")] = False,
    custody: Annotated[
        bool,
        typer.Option("--custody", help="Also replay custody offline and re-decide every release (implies --full)."),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Audit the log: signatures, witnesses, consistency with the saved state, inclusion of entries; with
    --custody, every custody entry's writer and authorisation, and every release re-decided."""
    witnesses = [NoteVerifier.from_vkey(v) for v in witness_key or []]
    for w in witnesses:
        if w.sig_type != COSIGNATURE_V1:
            raise EntryError(f"witness key {w.name} is not a cosignature/v1 key")
    report = verify_log(
        LedgerClient(url),
        state,
        log_vkey=log_key,
        witnesses=witnesses,
        min_witnesses=0 if no_witness else max(1, len(witnesses)) if min_witnesses < 0 else min_witnesses,
        indices=index or [],
        full=full or custody,
    )
    audit = audit_custody(enumerate(report.entries)) if custody else None
    if json_out:
        print_json({**report.to_json(), **({"custody": audit.to_json()} if audit else {})})
    else:
        grew = "" if report.previous_size is None else f", consistent with size {report.previous_size}"
        console.print(
            f"verified {report.origin} at size {report.size}{grew}; witnesses: {report.witnesses or 'none'}"
            f"{'; full history re-hashed' if report.full_history else ''}"
        )
        if audit is not None:
            officers = ", ".join(f"{o['name']} ({o['key_id'][:16]})" for o in audit.officers) or "none"
            console.print(f"custody: officers {officers}, {audit.threshold} to co-sign; {len(audit.releases)} releases")
            for release in audit.releases:
                mark = "ok" if release["verified"] else "[bold red]NOT ALLOWED[/]"
                verdict = release.get("attestation")
                attested = f", TPM quote {verdict['result']} (class {verdict['host_class']})" if verdict else ""
                console.print(
                    f"  entry {release['index']}: {release['model_id'][:23]}… to {release.get('host', '?')} for "
                    f"{release.get('requester', '?')}{attested}: {mark}"
                )
            for problem in audit.problems:
                console.print(f"  [bold red]entry {problem.index} ({problem.type})[/]: {problem.reason}")
            for ignored in audit.ignored:  # egress or location entries by keys the officers did not enrol
                console.print(f"  entry {ignored['index']} ({ignored['type']}) not counted: {ignored['reason']}")
    if audit is not None and not audit.ok:
        raise CustodyAuditError(f"custody audit: {len(audit.problems)} ledger entries would not have been accepted")


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
