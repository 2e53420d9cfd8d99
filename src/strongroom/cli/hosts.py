"""``strongroom hosts ...``: enrol and retire the machines a data key may go to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.admin import DEFAULT_SERVER, HoursOption, OfficerKeys, OutOption, ServerOption, send_or_save
from strongroom.cli.common import JsonOption, console, print_json
from strongroom.custody import admin
from strongroom.custody.client import CustodyClient
from strongroom.signing import Signer, Verifier, load_signer

hosts_app = typer.Typer(help="Serving hosts: keygen, attest (TPM evidence), enrol, retire, show.", no_args_is_help=True)


@hosts_app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the host's identity key (PATH and PATH.pub).")],
) -> None:
    """Make a host's Ed25519 identity key (0600) and its public key, for enrolment."""
    Signer.generate("ed25519").save(path, path.with_name(path.name + ".pub"))
    console.print(f"host identity key {path}; public key {path}.pub (give it to the officers)")


@hosts_app.command("enrol")
def enrol(
    host: Annotated[str, typer.Argument(help="Host id (never reused).")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The host's Ed25519 identity public key (PEM).")],
    name: Annotated[str, typer.Option(help="What approvers see, e.g. gpu-node-01.dc2.")],
    site: Annotated[str, typer.Option(help="Where it is (datacentre, room, rack).")],
    owner: Annotated[str, typer.Option(help="Who answers for it.")],
    officer_key: OfficerKeys,
    evidence: Annotated[
        Path | None, typer.Option("--evidence", help="TPM enrolment evidence from `host attest` (attested host).")
    ] = None,
    tcti: Annotated[
        str | None, typer.Option("--tcti", help="The host TPM to run credential activation against (with --evidence).")
    ] = None,
    host_class: Annotated[str, typer.Option("--host-class", help="Golden-values class (with --evidence).")] = "",
    manufacturer_ca: Annotated[
        list[Path], typer.Option("--manufacturer-ca", help="TPM manufacturer CA (PEM) the EK must chain to.")
    ] = [],  # noqa: B006
    out: OutOption = None,
    hours: HoursOption = 1.0,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Enrol a host (two officers): from then on requests may name it and it alone may fetch. With
    --evidence, an attested host: the EK chain and the AK's binding to the identity key are checked here and
    credential activation is run against the host's TPM (--tcti) before anyone signs."""
    key = Verifier.load(public_key).pem().decode()
    if evidence is None:
        proposal = admin.enrol_host(host, name=name, site=site, owner=owner, public_key=key)
    else:
        from strongroom.attest.enrol import EnrolmentEvidence
        from strongroom.attest.host import HostTpm
        from strongroom.custody.errors import CustodyError

        if tcti is None or not host_class or not manufacturer_ca:
            raise CustodyError("an attested enrolment needs --tcti, --host-class and --manufacturer-ca")
        with HostTpm(tcti) as tpm:
            proposal = admin.enrol_attested_host(
                host, name=name, site=site, owner=owner, public_key=key, host_class=host_class,
                evidence=EnrolmentEvidence.from_json(evidence.read_bytes()),
                trusted_cas=[p.read_bytes() for p in manufacturer_ca], activate=tpm.activate_credential,
            )  # fmt: skip
    send_or_save(proposal, officer_key, out, server, json_out, hours)


@hosts_app.command("retire")
def retire(
    host: str,
    officer_key: OfficerKeys,
    reason: str = "",
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """Retire a host for good: no further key goes to it (one officer)."""
    send_or_save(admin.retire_host(host, reason), officer_key, None, server, json_out)


@hosts_app.command("show")
def show(
    host: str,
    person: Annotated[str | None, typer.Option("--person", help="Your person id (with --key).")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Your key, or an officer's with --person officer.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    json_out: JsonOption = False,
) -> None:
    """A host's record: name, site, owner, identity key fingerprint, retired or not (a signed read)."""
    from strongroom.custody.errors import CustodyError
    from strongroom.custody.protocol import new_read_query

    if person is None or key is None:
        raise CustodyError("give --person and --key (an active person, or --person officer with an officer's key)")
    info = CustodyClient(server).read(new_read_query(person, f"host:{host}", load_signer(key)))
    if json_out:
        print_json(info)
        return
    state = "RETIRED" if info["retired"] else "active"
    console.print(f"{info['host_id']}: {info['name']} at {info['site']} ({info['owner']}), {state}")
    console.print(f"  identity key {info['fingerprint']}")
    tpm = info.get("tpm")
    if tpm:
        console.print(
            f"  TPM: class {tpm['host_class']}, {tpm['ek_manufacturer']} {tpm['ek_model']}, AK {tpm['ak_name'][:20]}..."
        )


def register(app: typer.Typer) -> None:
    from strongroom.cli.attest import attest

    hosts_app.command("attest")(attest)
    app.add_typer(hosts_app, name="hosts")
    app.add_typer(hosts_app, name="host")
