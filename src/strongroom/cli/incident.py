"""``strongroom incident ...``: the weight-leak playbook, executed and evidenced (docs/incident.md).

Every command that changes custody goes through the custody server, which decides (one officer declares
and contains; threshold officers adopt a playbook, rekey, set a fingerprint policy; threshold officers and a
custodian lift). The rest reads the ledger: ``status`` and ``timeline`` replay it with the library's own
code, ``attribute`` compares a leaked copy with the releases the ledger recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.admin import DEFAULT_SERVER, OfficerKeys, OutOption, ServerOption, send_or_save
from strongroom.cli.common import (
    JsonOption,
    KeyConfigOption,
    KeyProviderOption,
    KeysOption,
    ProviderChoice,
    console,
    print_json,
    provider_from_options,
)
from strongroom.custody import admin
from strongroom.custody.client import CustodyClient
from strongroom.custody.protocol import OFFICER_READER, SEVERITIES, new_step_ack
from strongroom.custody.state import CustodyState, key_digest, replay
from strongroom.incident.errors import IncidentError, PlaybookError
from strongroom.ledger.client import LedgerClient
from strongroom.signing import load_signer

incident_app = typer.Typer(
    help="Incident response: declare, contain, rotate, investigate, attribute, lift.", no_args_is_help=True
)
playbook_app = typer.Typer(help="Playbooks as data (CACAO 2.0 JSON).", no_args_is_help=True)
incident_app.add_typer(playbook_app, name="playbook")

PlaybookOption = Annotated[str, typer.Option("--playbook", help="Shipped (leak, distillation) or adopted name.")]


def _state(server: str) -> CustodyState:
    from strongroom.incident.remote import ledger_entries

    client = LedgerClient(server)
    try:
        return replay(ledger_entries(client))
    finally:
        client.close()


def _playbook(name: str, file: Path | None = None, server: str | None = None) -> Any:
    from strongroom.incident.playbook import SHIPPED, Playbook, shipped

    if file is not None:
        try:
            return Playbook.parse(json.loads(file.read_bytes()))
        except ValueError:
            raise PlaybookError(f"{file}: not valid JSON") from None
    if server is not None:
        adopted = _state(server).playbooks.get(name)
        if adopted is not None:
            return Playbook.parse(adopted.document)
    if name not in SHIPPED:
        raise PlaybookError(f"no playbook {name!r} (shipped: {', '.join(SHIPPED)}; or adopt one)")
    return shipped(name)


# -- playbooks ------------------------------------------------------------------------------------------


@playbook_app.command("show")
def playbook_show(
    name: Annotated[str, typer.Argument(help="leak, distillation, or an adopted playbook's name.")] = "leak",
    file: Annotated[Path | None, typer.Option("--file", help="Show this playbook file instead.")] = None,
    server: Annotated[str | None, typer.Option("--server", help="Prefer the playbook adopted on this server.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Who does what, in what order, by when, and with which command."""
    from strongroom.incident.playbook import render

    playbook = _playbook(name, file, server)
    if json_out:
        print_json({"name": playbook.name, "digest": playbook.digest, "steps": [s.to_json() for s in playbook.steps]})
        return
    console.print(render(playbook), highlight=False, markup=False, soft_wrap=True)


@playbook_app.command("export")
def playbook_export(
    name: Annotated[str, typer.Argument(help="leak or distillation.")],
    out: Annotated[Path, typer.Argument(help="Where to write the CACAO 2.0 JSON (to edit and adopt).")],
) -> None:
    """Write a shipped playbook as CACAO 2.0 JSON, to edit for your organisation."""
    from strongroom.incident.playbook import shipped_text

    if out.exists():
        raise PlaybookError(f"{out}: already exists")
    out.write_text(shipped_text(name))
    console.print(f"wrote {out}; adopt your edit with: strongroom incident playbook adopt {name} {out}")


@playbook_app.command("adopt")
def playbook_adopt(
    name: Annotated[str, typer.Argument(help="The name it is adopted under (e.g. leak).")],
    file: Annotated[Path, typer.Argument(help="The edited CACAO 2.0 playbook.")],
    officer_key: OfficerKeys,
    out: OutOption = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Adopt your organisation's playbook on the ledger (threshold officers co-sign)."""
    playbook = _playbook(name, file)
    send_or_save(admin.adopt_playbook(name, playbook.document), officer_key, out, server, json_out)


# -- declare, lift, acknowledge, status ---------------------------------------------------------------


@incident_app.command("declare")
def declare(
    scope: Annotated[str, typer.Argument(help="all, model:ID, host:ID or person:ID.")],
    officer_key: OfficerKeys,
    severity: Annotated[str, typer.Option(help="suspected or confirmed.")] = "confirmed",
    summary: Annotated[str, typer.Option(help="What is known (kept off the public log).")] = "",
    playbook: PlaybookOption = "leak",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Declare an incident: from this entry on, no release in scope passes the gate (one officer)."""
    if severity not in SEVERITIES:
        raise IncidentError(f"--severity must be one of {', '.join(SEVERITIES)}")
    proposal = admin.declare_incident(scope, severity, summary, playbook)
    signed = admin.propose(proposal, [load_signer(k) for k in officer_key])
    result = CustodyClient(server).admin(signed)
    incident = str(proposal.change["incident"])
    if json_out:
        print_json({"incident": incident, **result})
        return
    console.print(f"incident {incident} declared ({severity}, scope {scope}); ledger entry {result['ledger']['index']}")


@incident_app.command("lift")
def lift(
    incident: Annotated[str, typer.Argument(help="The incident id.")],
    officer_key: OfficerKeys,
    custodian_key: Annotated[
        list[Path], typer.Option("--custodian-key", help="An active SenL-5 custodian's key (PEM or pkcs11: URI).")
    ],
    reason: Annotated[str, typer.Option(help="Why it is safe to lift (kept off the public log).")] = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Lift the freeze: threshold officers and an active custodian co-sign."""
    keys = [load_signer(k) for k in [*officer_key, *custodian_key]]
    result = CustodyClient(server).admin(admin.propose(admin.lift_incident(incident, reason), keys))
    print_json(result) if json_out else console.print(
        f"incident {incident} lifted by {', '.join(result['officers'])}; ledger entry {result['ledger']['index']}"
    )


@incident_app.command("ack")
def ack(
    incident: Annotated[str, typer.Argument(help="The incident id.")],
    step: Annotated[str, typer.Argument(help="The playbook step (see 'incident playbook show').")],
    key: Annotated[Path, typer.Option("--key", help="Your private key (an officer's for security-officer steps).")],
    actor: Annotated[str, typer.Option("--as", help="Your person id, or 'officer'.")] = OFFICER_READER,
    role: Annotated[str | None, typer.Option(help="The step's role (default: the playbook's).")] = None,
    note: Annotated[str, typer.Option(help="A note for the record.")] = "",
    playbook: PlaybookOption = "leak",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Acknowledge a step you did, signed by you: the report shows who did what, when."""
    role = role or _playbook(playbook, server=server).step(step).role
    result = CustodyClient(server).acknowledge(new_step_ack(incident, step, role, actor, load_signer(key), note))
    print_json(result) if json_out else console.print(
        f"{step} acknowledged by {actor} ({role}); entry {result['index']}"
    )


def _status(state: CustodyState, incident: str, playbook: Any, now: datetime) -> dict[str, Any]:
    from strongroom.incident.report import step_report

    found = state.incidents.get(incident)
    if found is None:
        raise IncidentError(f"no incident {incident} on the ledger")
    return step_report(
        incident, found.scope, found.severity, found.declared_at, found.index, found.lifted_at, found.steps,
        playbook, now,
    )  # fmt: skip


@incident_app.command("status")
def status(
    incident: Annotated[str, typer.Argument(help="The incident id.")],
    playbook: PlaybookOption = "leak",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Every step of the playbook: done (by whom, when, which entry), open, or overdue."""
    report = _status(_state(server), incident, _playbook(playbook, server=server), datetime.now(UTC))
    if json_out:
        print_json(report)
        return
    console.print(f"incident {incident}: {report['severity']}, scope {report['scope']}, "
                  f"declared {report['declared_at']}, {'OPEN' if report['open'] else 'lifted'}")  # fmt: skip
    for step in report["steps"]:
        record = step["record"]
        who = f"{record['actor']} at {record['time']}" if record else f"due {step['due']}"
        colour = {"done": "green", "open": "yellow", "overdue": "bold red"}[step["state"]]
        console.print(
            f"{step['order']:>2}. [{colour}]{step['state']:<8}[/] {step['step']:<20} {step['role']:<17} {who}"
        )


# -- contain ------------------------------------------------------------------------------------------


@incident_app.command("contain")
def contain(
    incident: Annotated[str, typer.Argument(help="The incident id.")],
    step: Annotated[str, typer.Argument(help="retire-hosts, suspend-people, revoke-keys or egress-alarm.")],
    officer_key: OfficerKeys,
    host: Annotated[list[str] | None, typer.Option("--host", help="A host to act on (repeatable).")] = None,
    person: Annotated[list[str] | None, typer.Option("--person", help="A person to act on (repeatable).")] = None,
    responder_key: Annotated[
        Path | None, typer.Option("--responder-key", help="The appender key allowed egress.alarm (egress-alarm).")
    ] = None,
    ack_key: Annotated[
        Path | None, typer.Option("--ack-key", help="Who acknowledges (default: first officer).")
    ] = None,
    actor: Annotated[str, typer.Option("--as", help="The acknowledger's person id, or 'officer'.")] = OFFICER_READER,
    playbook: PlaybookOption = "leak",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Run one contain step; what the ledger shows done is not done again (safe to repeat after a crash)."""
    from strongroom.incident.contain import Targets, run_step
    from strongroom.incident.remote import RemotePort

    officers = [load_signer(k) for k in officer_key]
    if not officers:
        raise IncidentError("contain needs an officer's key (--officer-key)")
    role = _playbook(playbook, server=server).step(step).role
    port = RemotePort(
        server,
        officers=officers,
        ack_signer=load_signer(ack_key) if ack_key else officers[0],
        ack_actor=actor,
        ack_role=role,
        responder=load_signer(responder_key) if responder_key else None,
    )
    try:
        state, _ = port.state()
        found = state.incidents.get(incident)
        if found is None:
            raise IncidentError(f"no incident {incident} on the ledger")
        result = run_step(port, incident, step, Targets.of(found, host or [], person or []))
    finally:
        port.close()
    if json_out:
        print_json(result.to_json())
    elif result.already:
        console.print(f"{step}: already done and acknowledged; nothing to do")
    else:
        console.print(f"{step}: {', '.join(result.done) or 'nothing left to change'}; acknowledged")


# -- rotate and retire ----------------------------------------------------------------------------------


@incident_app.command("rotate")
def rotate(
    sealed: Annotated[Path, typer.Argument(help="The sealed model directory (under the old key).")],
    out: Annotated[Path, typer.Argument(help="Where to write the re-sealed model.")],
    officer_key: OfficerKeys,
    keys: KeysOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    new_keys: Annotated[Path | None, typer.Option("--new-keys", help="Local key directory for the new key.")] = None,
    new_key_provider: Annotated[
        ProviderChoice | None, typer.Option("--new-key-provider", help="Provider for the new key (default: the old).")
    ] = None,
    new_key_config: Annotated[Path | None, typer.Option("--new-key-config", help="Settings for the new key.")] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the rekey.")] = "incident rotation",
    out_change: Annotated[Path | None, typer.Option("--out-change", help="Save the rekey for co-signing.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Re-seal under a fresh data key (no plaintext on disk) and register it, retiring the old key (threshold
    officers co-sign the rekey)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from strongroom.incident.rotate import reseal
    from strongroom.seal import SealedModel

    total = sum(e.plaintext_length for e in SealedModel.inspect(sealed).members())
    same = new_keys is None and new_key_provider is None and new_key_config is None
    with provider_from_options(keys, None, key_provider, key_config) as old, Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console, transient=json_out, disable=json_out,
    ) as bar:  # fmt: skip
        task = bar.add_task("re-sealing", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        def named(name: str, _size: int) -> None:
            bar.update(task, description=f"re-sealing {name}")

        if same:
            result = reseal(sealed, out, old, old, progress=advance, on_file=named)
        else:
            with provider_from_options(new_keys, None, new_key_provider, new_key_config) as new:
                result = reseal(sealed, out, old, new, progress=advance, on_file=named)
    proposal = admin.rekey_model(result.model_id, result.key, key_digest(result.old_key), reason)
    if not json_out:
        console.print(f"re-sealed {result.files} files ({result.plaintext_bytes} bytes) into {out}")
    send_or_save(proposal, officer_key, out_change, server, json_out)


@incident_app.command("retire-key")
def retire_key(
    old_sealed: Annotated[Path, typer.Argument(help="The old sealed model (names the key to retire).")],
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Destroy or disable the old key in its provider, once the ledger shows it retired and nothing in service
    still depends on it (PKCS#11: destroy the KEK object; OpenBao: raise min_decryption_version)."""
    from strongroom.incident.errors import RetireError
    from strongroom.incident.rotate import retire_in_ledger_only, retire_openbao, retire_pkcs11
    from strongroom.keys.settings import KeySettings
    from strongroom.seal import SealedModel

    old = SealedModel.inspect(old_sealed).key
    state = _state(server)
    if key_digest(old) not in state.retired_keys:
        raise RetireError("the ledger does not show this key retired: register the re-sealed key first (rotate)")
    in_service = [m.key for m in state.models.values()]
    if old.provider == "pkcs11":
        settings = KeySettings.load(key_config, provider="pkcs11").pkcs11
        if settings is None or settings.pin is None:
            raise RetireError("retiring a PKCS#11 key needs the token's settings and PIN (--key-config)")
        done = retire_pkcs11(
            old, in_service, module=settings.module, token=settings.token_label, pin=settings.pin.reveal()
        )
    elif old.provider == "openbao":
        with provider_from_options(None, None, key_provider or ProviderChoice.openbao, key_config) as transit:
            done = retire_openbao(old, in_service, transit)
    else:
        done = retire_in_ledger_only(old)
    print_json(done.to_json()) if json_out else console.print(f"{done.provider}:{done.key_id}: {done.action}")


# -- timeline and attribution ---------------------------------------------------------------------------


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise IncidentError(f"{text!r}: a time like 2026-11-30T06:00:00Z") from None


@incident_app.command("timeline")
def timeline_command(
    url: Annotated[str, typer.Argument(help="Ledger URL.")],
    state: Annotated[Path, typer.Option("--state", help="Auditor state: pinned key and last checkpoint.")],
    witness_key: Annotated[list[str] | None, typer.Option("--witness-key", help="Witness vkey (repeatable).")] = None,
    no_witness: Annotated[bool, typer.Option("--no-witness", help="Accept an unwitnessed checkpoint.")] = False,
    log_key: Annotated[str | None, typer.Option("--log-key", help="Pin this log vkey.")] = None,
    since: Annotated[str | None, typer.Option(help="Window start, 2026-11-30T00:00:00Z.")] = None,
    until: Annotated[str | None, typer.Option(help="Window end.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model id.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    person: Annotated[str | None, typer.Option("--person", help="Only this person.")] = None,
    anomalies: Annotated[bool, typer.Option("--anomalies", help="Print only flagged events.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write a readable HTML page here.")] = None,
    json_out: JsonOption = False,
) -> None:
    """The forensic timeline, from a ledger checked against a witnessed checkpoint; anomalies flagged, the
    most suspect release named."""
    from strongroom.incident import timeline
    from strongroom.incident.evidence import refused_by_replay, witnessed_entries
    from strongroom.ledger.note import NoteVerifier

    witnesses = [NoteVerifier.from_vkey(v) for v in witness_key or []]
    client = LedgerClient(url)
    try:
        entries, checked = witnessed_entries(
            client,
            state,
            log_vkey=log_key,
            witnesses=witnesses,
            min_witnesses=0 if no_witness else max(1, len(witnesses)),
        )
    finally:
        client.close()
    window = timeline.Window(_when(since), _when(until), model, host, person)
    result = timeline.build(entries, window, refused=refused_by_replay(entries), checked=checked)
    if html_out is not None:
        html_out.write_text(timeline.render_html(result))
    if json_out:
        print_json(result.to_json())
        return
    console.print(timeline.render_text(result, anomalies), highlight=False, markup=False, soft_wrap=True)


@incident_app.command("attribute")
def attribute_command(
    leaked: Annotated[Path, typer.Argument(help="The leaked copy: a safetensors file or a directory of them.")],
    original: Annotated[Path, typer.Option("--original", help="The sealed model the releases were of.")],
    fingerprint_key: Annotated[Path, typer.Option("--fingerprint-key", help="The sealed fingerprint key.")],
    keys: KeysOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    candidates: Annotated[
        Path | None, typer.Option("--candidates", help="JSON list of release ids (default: the ledger's).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Name the release a leaked copy came from (or say it carries no mark of ours)."""
    from strongroom.incident.fingerprint import (
        Candidate,
        FingerprintKey,
        FingerprintPolicy,
        attribute,
        load_plain_tensors,
    )
    from strongroom.seal import SealedModel

    with provider_from_options(keys, None, key_provider, key_config) as provider:
        with SealedModel.open(original, provider) as model:
            model_id = model.model_id or ""
            tensors = model.load_tensors("numpy")
        key = FingerprintKey.load(fingerprint_key, provider)
    try:
        state = _state(server)
        record = state.fingerprints.get(model_id)
        if record is None:
            raise IncidentError(f"the ledger sets no fingerprint policy for {model_id}")
        if record.key_commitment != key.commitment:
            raise IncidentError("this fingerprint key is not the one the ledger's policy names")
        policy = FingerprintPolicy.from_json(record.policy)
        if candidates is not None:
            listed = [Candidate.from_json(c) for c in json.loads(candidates.read_bytes())]
        else:
            listed = _ledger_candidates(server, model_id)
        result = attribute(load_plain_tensors(leaked), tensors, listed, key=key, policy=policy)
    finally:
        key.wipe()
    if json_out:
        print_json(result.to_json())
        return
    if result.release_id:
        best = result.matches[0]
        console.print(
            f"attributed to release {best.release_id} ({best.label or ''}): z = {best.z:.1f} "
            f"(false-hit bound {result.false_hit_bound:.1e} over {len(result.scores)} candidates)"
        )
    else:
        console.print(f"{result.verdict}: no release named ({len(result.scores)} candidates tested)")


def _ledger_candidates(server: str, model_id: str) -> list[Any]:
    from strongroom.incident.fingerprint import Candidate

    client = LedgerClient(server)
    try:
        found = client.query(type="key.released", model_id=model_id)
    finally:
        client.close()
    return [
        Candidate(
            str(e.body["request_id"]), str(e.body["fingerprint"]), f"entry {i} to {e.body['host'].get('host_id')}"
        )
        for i, e in found
        if "fingerprint" in e.body
    ]


@incident_app.command("fingerprint-key")
def fingerprint_key_command(
    out: Annotated[
        Path, typer.Argument(help="Where to write the sealed key (the server reads DATA/fingerprints/*.key).")
    ],
    keys: KeysOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
) -> None:
    """Make a fingerprint key, sealed under the key provider; prints its commitment (for 'incident mark')."""
    from strongroom.incident.fingerprint import FingerprintKey

    key = FingerprintKey.generate()
    try:
        with provider_from_options(keys, None, key_provider, key_config) as provider:
            key.save(out, provider)
        console.print(key.commitment, highlight=False)
    finally:
        key.wipe()


@incident_app.command("mark")
def mark(
    model_id: Annotated[str, typer.Argument(help="A registered model id.")],
    commitment: Annotated[str, typer.Option("--commitment", help="The fingerprint key's commitment.")],
    officer_key: OfficerKeys,
    elements: Annotated[int, typer.Option(help="Positions marked per release.")] = 4096,
    epsilon_ppm: Annotated[int, typer.Option(help="Amplitude, millionths of each tensor's std.")] = 20_000,
    disable: Annotated[bool, typer.Option("--disable", help="Stop marking this model's releases.")] = False,
    out: OutOption = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Choose whether and how a model's releases are marked (threshold officers co-sign)."""
    from strongroom.incident.fingerprint import FingerprintPolicy

    policy = FingerprintPolicy(model_id, elements=elements, epsilon_ppm=epsilon_ppm, enabled=not disable)
    send_or_save(admin.set_fingerprint(model_id, policy.to_json(), commitment), officer_key, out, server, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
