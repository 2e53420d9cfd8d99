"""``strongroom host attest`` (the host's TPM evidence and loader measurement) and ``strongroom policy golden``
/ ``policy tpm-ca`` (what attested hosts are held to: two officers each). docs/attestation.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.admin import DEFAULT_SERVER, HoursOption, OfficerKeys, OutOption, ServerOption, send_or_save
from strongroom.cli.common import JsonOption, console, print_json
from strongroom.cli.extras import require
from strongroom.custody import admin
from strongroom.custody.attestation import LAYOUT
from strongroom.custody.errors import CustodyError

policy_app = typer.Typer(help="Attestation policy: golden values per host class, TPM manufacturer CAs.")
TctiOption = Annotated[str, typer.Option("--tcti", help="The host TPM's TCTI, e.g. swtpm:host=127.0.0.1,port=2321.")]


def attest(
    identity: Annotated[Path, typer.Option("--identity", help="The host's Ed25519 identity public key (PEM).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the enrolment evidence (JSON) for the officers.")],
    tcti: TctiOption,
    measure: Annotated[
        bool, typer.Option("--measure/--no-measure", help="Also measure the loader into its PCR (from zero).")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """On the host: create the attestation key for this identity in the TPM and write the enrolment evidence
    (EK certificate, EK public, the AK with its birth certificate); with --measure, reset the loader and model
    PCRs and extend the loader PCR with this build's loader digest (what measured boot does in production)."""
    require("attest", "strongroom host attest")
    from strongroom.attest.enrol import EnrolmentEvidence
    from strongroom.attest.host import HostTpm
    from strongroom.attest.loader import loader_digest
    from strongroom.signing import Verifier

    pem = Verifier.load(identity).pem()
    with HostTpm(tcti) as tpm:
        evidence = EnrolmentEvidence(tpm.ek_certificate(), tpm.ek_public(), tpm.create_ak(pem))
        out.write_bytes(evidence.to_json())
        digest = None
        if measure:
            digest = loader_digest()
            tpm.reset(LAYOUT.loader)
            tpm.reset(LAYOUT.model)
            tpm.extend(LAYOUT.loader, digest)
    ak_name = evidence.ak.name.hex()
    if json_out:
        print_json({"evidence": str(out), "ak_name": ak_name, "loader_digest": digest.hex() if digest else None})
        return
    console.print(f"enrolment evidence {out} (AK {ak_name[:20]}...)")
    if digest is not None:
        console.print(f"loader measured into PCR {LAYOUT.loader}: {digest.hex()}")


@policy_app.command("golden")
def golden(
    host_class: Annotated[str, typer.Argument(help="The host class, e.g. inference.")],
    officer_key: OfficerKeys,
    loader_digest: Annotated[
        list[str], typer.Option("--loader-digest", help="An approved build's loader digest (hex); repeatable.")
    ] = [],  # noqa: B006
    pcr: Annotated[list[str], typer.Option("--pcr", help="N=HEX: an allowed SHA-256 value of PCR N; repeatable.")] = [],  # noqa: B006
    this_build: Annotated[
        bool, typer.Option("--this-build", help="Add the loader digest of the Strongroom installed here.")
    ] = False,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Set a host class's golden values (two officers): the loader PCR's value after one extend with each
    approved loader digest, and/or explicit PCR values. Replaces the class's current values."""
    from strongroom.attest.pcrs import replay

    digests = [_hex32(d, "--loader-digest") for d in loader_digest]
    if this_build:
        from strongroom.attest.loader import loader_digest as measure

        digests.append(measure())
    values: dict[int, list[bytes]] = {}
    if digests:
        values[LAYOUT.loader] = [replay([d]) for d in digests]
    for item in pcr:
        number, sep, value = item.partition("=")
        if not sep or not number.isdigit() or not 0 <= int(number) <= 23:
            raise CustodyError(f"--pcr {item!r}: expected N=HEX with N 0-23")
        values.setdefault(int(number), []).append(_hex32(value, "--pcr"))
    if not values:
        raise CustodyError("give --loader-digest, --this-build or --pcr")
    send_or_save(admin.golden_values(host_class, values), officer_key, out, server, json_out, hours)


@policy_app.command("tpm-ca")
def tpm_ca(
    certificate: Annotated[Path, typer.Argument(help="The TPM manufacturer's CA certificate (PEM).")],
    officer_key: OfficerKeys,
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Trust a TPM manufacturer CA for host enrolment (two officers)."""
    send_or_save(admin.trust_manufacturer_ca(certificate.read_bytes()), officer_key, out, server, json_out, hours)


def _hex32(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CustodyError(f"{what}: {value!r} is not 64 hex digits")
    return raw


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
