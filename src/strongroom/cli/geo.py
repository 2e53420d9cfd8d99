"""``strongroom geo ...``: landmarks, measurements, verdicts and audits of where a host is.

strongroom geo landmark enrol ID --latitude --longitude --survey TEXT --key PATH [--registry FILE]
strongroom geo landmark serve --id ID --key PATH [--listen ADDR] [--port N]
strongroom geo prove HOST --key PATH --landmarks FILE --at ID=ADDR:PORT ... --out FILE
strongroom geo verify MEASUREMENTS --landmarks FILE --host-key PUB --opening-out FILE [--allow CC ...]
                      [--cross-check FILE ...] [--ledger URL --signer-key KEY]
strongroom geo audit --statement FILE --opening FILE --landmarks FILE [--host-key PUB]
strongroom geo show HOST --ledger URL [--max-age-minutes N] [--trusted KEYID ...]
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.atomic import write_atomic
from strongroom.cli.common import CommandError, JsonOption, console, print_json
from strongroom.cli.extras import require
from strongroom.geo.errors import GeoError, LandmarkError, MeasurementError

geo_app = typer.Typer(help="Country-level location of hosts: landmarks, proofs, verdicts.", no_args_is_help=True)
landmark_app = typer.Typer(help="Landmarks: enrol one, or serve challenges.", no_args_is_help=True)
geo_app.add_typer(landmark_app, name="landmark")

LandmarksOption = Annotated[Path, typer.Option("--landmarks", help="Landmark registry (JSON list of records).")]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except ValueError:
        raise GeoError(f"{path}: {what} is not JSON") from None


@landmark_app.command("enrol")
def landmark_enrol(
    landmark_id: Annotated[str, typer.Argument(help="Landmark id (never reused), e.g. fra-1.")],
    latitude: Annotated[float, typer.Option(help="Surveyed latitude, degrees (WGS 84).")],
    longitude: Annotated[float, typer.Option(help="Surveyed longitude, degrees (WGS 84).")],
    survey: Annotated[str, typer.Option(help="How the coordinates were fixed (who, when, instrument).")],
    key: Annotated[Path, typer.Option("--key", help="Where to write the landmark's new Ed25519 key (and .pub).")],
    registry: Annotated[Path | None, typer.Option("--registry", help="Add the record to this registry.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Make a landmark key and its enrolment record (the geo.landmark body the officers co-sign)."""
    from strongroom.geo.landmarks import Landmark, LandmarkSet, check_id
    from strongroom.signing import Signer

    check_id(landmark_id)
    if key.exists():
        raise LandmarkError(f"{key} exists: a landmark key is never overwritten")
    signer = Signer.generate("ed25519")
    landmark = Landmark.from_body(
        {
            "landmark": landmark_id,
            "public_key": signer.verifier.pem().decode(),
            "latitude": latitude,
            "longitude": longitude,
            "survey": survey,
        }
    )
    found = LandmarkSet.load(registry) if registry is not None and registry.exists() else LandmarkSet()
    found.add(landmark)  # refuses a reused id or key before anything is written
    signer.save(key, key.with_name(key.name + ".pub"))
    if registry is not None:
        found.save(registry)
    body = landmark.enrolment_body()
    if json_out:
        print_json(body)
    else:
        console.print(f"landmark {landmark_id} at {latitude:.5f}, {longitude:.5f}; key {key} (0600), {key}.pub")
        console.print("officers enrol it with 'strongroom admin landmark enrol BODY.json' (the --json output)")


@landmark_app.command("serve")
def landmark_serve(
    landmark_id: Annotated[str, typer.Option("--id", help="This landmark's enrolled id.")],
    key: Annotated[Path, typer.Option("--key", help="This landmark's private key (PEM) or pkcs11: URI.")],
    listen: Annotated[str, typer.Option(help="Address to listen on (UDP and TCP).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (UDP and TCP).")] = 8760,
    answer_timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 1.0,
) -> None:
    """Serve challenges on UDP and TCP until interrupted."""
    import asyncio

    from strongroom.geo.landmarks import check_id
    from strongroom.geo.service import LandmarkService, ServiceSettings, bind, serve
    from strongroom.signing import load_signer

    check_id(landmark_id)
    signer = load_signer(str(key))
    udp, tcp = bind(listen, port)
    console.print(f"landmark {landmark_id} serving on {listen}:{tcp.getsockname()[1]} (udp, tcp)", highlight=False)
    service = LandmarkService(landmark_id, signer, ServiceSettings(answer_timeout=answer_timeout))
    asyncio.run(serve(service, udp, tcp))


def _target(text: str, landmarks: Any) -> Any:
    from strongroom.geo.prover import Target

    name, sep, where = text.partition("=")
    address, colon, port = where.rpartition(":")
    if not sep or not colon or not port.isascii() or not port.isdigit():
        raise MeasurementError(f"--at {text!r}: expected ID=ADDRESS:PORT")
    return Target(landmarks.get(name), address.strip("[]"), int(port))


@geo_app.command("prove")
def prove(
    host: Annotated[str, typer.Argument(help="This host's enrolled id.")],
    key: Annotated[Path, typer.Option("--key", help="The host's identity key (PEM or pkcs11: URI).")],
    landmarks: LandmarksOption,
    at: Annotated[list[str], typer.Option("--at", help="ID=ADDRESS:PORT of a landmark to be measured by.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the landmarks' signed reports.")],
    samples: Annotated[int, typer.Option(help="Samples per landmark (1-32).")] = 10,
    transport: Annotated[str, typer.Option(help="udp or tcp.")] = "udp",
    timeout: Annotated[float, typer.Option(help="Seconds for each landmark's session.")] = 20.0,
    json_out: JsonOption = False,
) -> None:
    """Be measured by landmarks: answer their signed challenges with the host key; save their reports."""
    from strongroom.geo.landmarks import LandmarkSet
    from strongroom.geo.prover import prove as run_prove
    from strongroom.signing import load_signer

    if transport not in ("udp", "tcp"):
        raise MeasurementError("--transport is udp or tcp")
    found = LandmarkSet.load(landmarks)
    targets = [_target(item, found) for item in at]
    run = run_prove(host, load_signer(str(key)), targets, samples=samples, transport=transport, timeout=timeout)
    write_atomic(out, json.dumps(run.to_json(), indent=2).encode() + b"\n", mode=0o644)
    if json_out:
        print_json({"reports": sorted(run.reports), "failures": run.failures, "epoch": run.epoch})
        return
    console.print(f"{len(run.reports)} reports for {host} (epoch {run.epoch}) in {out}", highlight=False)
    for name, why in run.failures.items():
        console.print(f"  {name}: {why}", highlight=False)


@geo_app.command("verify")
def verify(
    measurements: Annotated[Path, typer.Argument(help="The reports file 'geo prove' wrote.")],
    landmarks: LandmarksOption,
    host_key: Annotated[Path, typer.Option("--host-key", help="The host's enrolled public key (PEM).")],
    opening_out: Annotated[Path, typer.Option("--opening-out", help="Where to keep the opening (for auditors).")],
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Allowed country (ISO alpha-2).")] = None,
    cross_check: Annotated[
        list[Path] | None, typer.Option("--cross-check", help="Landmark-to-landmark reports ('geo prove' output).")
    ] = None,
    statement_out: Annotated[Path | None, typer.Option("--statement-out", help="Write the geo.verdict body.")] = None,
    ledger: Annotated[str | None, typer.Option("--ledger", help="Append the statement to this ledger.")] = None,
    signer_key: Annotated[Path | None, typer.Option("--signer-key", help="Appender key allowed geo.verdict.")] = None,
    margin_km: Annotated[float, typer.Option(help="Margin kept from every border, km.")] = 25.0,
    faulty: Annotated[int, typer.Option(help="IN must hold with this many landmarks left out.")] = 1,
    min_samples: Annotated[int, typer.Option(help="Valid samples a landmark needs.")] = 5,
    json_out: JsonOption = False,
) -> None:
    """Check the reports, compute the verdict, commit to the raw data; optionally append to the ledger."""
    require("geo", "strongroom geo verify")
    from strongroom.geo.crosscheck import cross_check as run_cross_check
    from strongroom.geo.landmarks import LandmarkSet
    from strongroom.geo.region import Parameters
    from strongroom.geo.verify import ENTRY_TYPE, assess, statement
    from strongroom.signing import Verifier, load_signer

    found = LandmarkSet.load(landmarks)
    data = _read_json(measurements, "the measurements")
    if not isinstance(data, dict) or not isinstance(data.get("reports"), list) or not isinstance(data.get("host"), str):
        raise GeoError(f"{measurements}: not a 'geo prove' output")
    flagged: dict[str, str] = {}
    for path in cross_check or []:
        peers = _read_json(path, "cross-check reports")
        flagged.update(run_cross_check(peers.get("reports", []) if isinstance(peers, dict) else [], found).flagged)
    if (ledger is None) != (signer_key is None):
        raise GeoError("--ledger and --signer-key go together")
    assessment = assess(
        data["host"],
        Verifier.load(host_key),
        data["reports"],
        found,
        params=Parameters(min_samples=min_samples, margin_km=margin_km, faulty=faulty),
        allowed=allow or None,
        flagged=flagged,
    )
    body, opening = statement(assessment)
    write_atomic(opening_out, json.dumps(opening.to_json(), indent=2).encode() + b"\n", mode=0o600)
    if statement_out is not None:
        write_atomic(statement_out, json.dumps(body, indent=2).encode() + b"\n", mode=0o644)
    receipt = None
    if ledger is not None and signer_key is not None:
        from strongroom.ledger.client import LedgerClient
        from strongroom.ledger.entries import make_entry

        receipt = LedgerClient(ledger).append(make_entry(ENTRY_TYPE, body, load_signer(str(signer_key))))
    verdict = assessment.verdict
    if json_out:
        print_json({"statement": body, "left_out": assessment.left_out, "flagged": flagged, "receipt": receipt})
        return
    console.print(f"{data['host']}: {verdict.label()} ({verdict.reason})", highlight=False)
    for name, why in {**assessment.left_out}.items():
        console.print(f"  left out {name}: {why}", highlight=False)
    if receipt is not None:
        console.print(f"appended as index {receipt['index']}", highlight=False)


@geo_app.command("audit")
def audit(
    statement_file: Annotated[Path, typer.Option("--statement", help="The geo.verdict body (or the whole entry).")],
    opening: Annotated[Path, typer.Option("--opening", help="The opening the verifier kept.")],
    landmarks: LandmarksOption,
    host_key: Annotated[Path | None, typer.Option("--host-key", help="The host's enrolled public key.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Recompute a verdict from its opening; exit 1 if the commitment or the verdict does not match."""
    require("geo", "strongroom geo audit")
    from strongroom.geo.landmarks import LandmarkSet
    from strongroom.geo.verify import recompute
    from strongroom.signing import Verifier

    value = _read_json(statement_file, "the statement")
    body = value.get("body", value) if isinstance(value, dict) else value
    if not isinstance(body, dict):
        raise GeoError(f"{statement_file}: not a geo.verdict body")
    verdict = recompute(
        body,
        _read_json(opening, "the opening"),
        LandmarkSet.load(landmarks),
        host_key=Verifier.load(host_key) if host_key else None,
    )
    result: dict[str, Any] = {
        "verdict": verdict.label(),
        "reason": verdict.reason,
        "landmarks": list(verdict.landmarks),
        "area_km2": verdict.area_km2,
    }
    if json_out:
        print_json(result)
        return
    area = f"{verdict.area_km2:,.0f} km2" if verdict.area_km2 is not None else "unbounded"
    console.print(f"recomputed {verdict.label()}: matches the statement; region {area}", highlight=False)


@geo_app.command("show")
def show(
    host: Annotated[str, typer.Argument(help="Host id.")],
    ledger: Annotated[str, typer.Option("--ledger", help="Ledger URL.")],
    max_age_minutes: Annotated[float, typer.Option(help="How old a verdict may be.")] = 60.0,
    trusted: Annotated[list[str] | None, typer.Option("--trusted", help="Verifier key id to trust.")] = None,
    json_out: JsonOption = False,
) -> None:
    """The host's latest fresh verdict on the ledger (only the country is ever public)."""
    require("geo", "strongroom geo show")
    from strongroom.geo.state import GeoState
    from strongroom.geo.verify import ENTRY_TYPE
    from strongroom.ledger.client import LedgerClient

    state = GeoState(frozenset(trusted) if trusted else None)
    state.fold(LedgerClient(ledger).query(type=ENTRY_TYPE))
    location = state.verdict(host, datetime.now(UTC), timedelta(minutes=max_age_minutes))
    if json_out:
        print_json(
            None
            if location is None
            else {
                "host": location.host_id,
                "verdict": location.outcome.value,
                "country": location.country,
                "epoch": location.epoch,
                "measured_at": location.measured_at.isoformat(),
                "index": location.index,
                "signer": location.signer,
            }
        )
        return
    if location is None:
        raise CommandError(
            f"{host}: no verdict within {max_age_minutes:g} minutes",
            hint="--max-age-minutes looks further back; --json prints null and exits 0",
        )
    console.print(
        f"{host}: {location.label()} measured {location.measured_at:%Y-%m-%d %H:%M}Z (entry {location.index})",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(geo_app, name="geo")
