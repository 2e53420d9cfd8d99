"""``strongroom egress ...``: budgets sized by the weights, the kernel layer on a weight host, the gateway."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import CommandError, JsonOption, console, print_json
from strongroom.cli.extras import require
from strongroom.egress.errors import BudgetError

egress_app = typer.Typer(help="Egress: budgets, kernel rules, the metered gateway.", no_args_is_help=True)
gateway_app = typer.Typer(
    help="The narrow, metered HTTP gateway in front of a host's inference server.", no_args_is_help=True
)
inference_app = typer.Typer(
    help="The reference inference server a weight host runs behind its gateway.", no_args_is_help=True
)
egress_app.add_typer(gateway_app, name="gateway")
egress_app.add_typer(inference_app, name="inference")

NetnsOption = Annotated[
    str | None, typer.Option("--netns", help="Act inside this named network namespace (ip netns exec).")
]


def _size_of(model: str) -> tuple[str, int]:
    """(model id, sealed plaintext bytes) of a sealed model directory."""
    from strongroom.seal import SealedModel

    sealed = SealedModel.inspect(Path(model))
    try:
        size = sum(e.plaintext_length for e in sealed.members())
        return sealed.model_id or Path(model).name, size
    finally:
        sealed.close()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1000
    return f"{n:,.2f} TB"


@egress_app.command("plan")
def plan_command(
    model: Annotated[str, typer.Argument(help="A sealed model directory, or a model id with --bytes.")],
    size_bytes: Annotated[
        int | None, typer.Option("--bytes", help="The model's size (else read from the sealed directory).")
    ] = None,
    host: Annotated[
        list[str] | None, typer.Option("--host", help="A host holding the model's key (repeatable).")
    ] = None,
    ledger: Annotated[
        str | None, typer.Option("--ledger", help="Find the hosts holding the key from key.released entries.")
    ] = None,
    compression: Annotated[float, typer.Option(help="Assumed attacker compression factor.")] = 100.0,
    horizon_days: Annotated[float, typer.Option(help="Detection horizon in days.")] = 90.0,
    period_seconds: Annotated[int, typer.Option(help="Budget period in seconds.")] = 86_400,
    cap_bytes: Annotated[
        int | None, typer.Option("--cap-bytes", help="Policy cap on the fleet budget per period.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Print the fleet budget per period, each host's share and the time an attacker would need at full budget."""
    from strongroom.egress.budget import DAY, BudgetPolicy, ModelHolding, plan

    say = functools.partial(console.print, soft_wrap=True, highlight=False)

    if size_bytes is None:
        model_id, size = _size_of(model)
    else:
        model_id, size = model, size_bytes
    hosts = list(host or [])
    if ledger:
        from strongroom.ledger.client import LedgerClient

        client = LedgerClient(ledger)
        try:
            for _, entry in client.query(type="key.released", model_id=model_id):
                held = entry.body.get("host")
                if isinstance(held, dict) and isinstance(held.get("host_id"), str):
                    hosts.append(held["host_id"])
        finally:
            client.close()
    if not hosts:
        hosts = ["(one host)"]
    policy = BudgetPolicy(compression, horizon_days * DAY, period_seconds, cap_bytes)
    result = plan([ModelHolding(model_id, size, tuple(hosts))], policy)
    fleet = result.fleets[model_id]
    if json_out:
        print_json(result.to_json())
        return
    per = "day" if period_seconds == DAY else f"{period_seconds} s"
    say(f"model {model_id}: {_human(size)} sealed ({size:,} bytes)")
    say(f"  attacker must move size / {compression:g} = {_human(fleet.effective_bytes)}; horizon {horizon_days:g} days")
    capped = f" (capped from {_human(fleet.uncapped_bytes)})" if fleet.capped else ""
    say(f"  fleet budget: {_human(fleet.fleet_bytes)} per {per}{capped} ({fleet.fleet_bytes:,} bytes)")
    days = fleet.attacker_seconds() / DAY
    raw_days = fleet.attacker_seconds(compressed=False) / DAY
    shown = (
        "never (zero budget)" if math.isinf(days) else f"{days:,.1f} days compressed, {raw_days:,.1f} days uncompressed"
    )
    say(f"  at full budget an attacker needs {shown}")
    for h, share in sorted(result.shares[model_id].items()):
        b = result.hosts[h]
        say(
            f"  host {h}: quota {share:,} bytes/{per} (kernel), gateway {b.gateway_bytes:,}, "
            f"rate {b.rate_bytes_per_s:,.2f} B/s, tc ceiling {b.ceiling_bits_per_s:,} bit/s"
        )
    say(f"  all {len(result.shares[model_id])} host(s) together: {result.fleet_exposure(model_id):,} bytes/{per}")


@egress_app.command("apply")
def apply_command(
    host: Annotated[str, typer.Option("--host", help="This weight host's id.")],
    gateway: Annotated[str, typer.Option("--gateway", help="The gateway's IPv4 address: the one peer allowed.")],
    quota_bytes: Annotated[int, typer.Option("--quota-bytes", help="IP bytes per period (the host's quota).")],
    period_seconds: Annotated[int, typer.Option(help="Budget period in seconds.")] = 86_400,
    ceiling_bits: Annotated[int | None, typer.Option("--ceiling-bits", help="tc TBF rate ceiling, bits/s.")] = None,
    interface: Annotated[str | None, typer.Option(help="Link to the gateway (default: the route's).")] = None,
    ledger: Annotated[
        str | None, typer.Option("--ledger", help="Restore the quota's usage from the last checkpoint here.")
    ] = None,
    signer: Annotated[str | None, typer.Option("--signer", help="Trust only checkpoints by this key id.")] = None,
    restore_bytes: Annotated[
        int, typer.Option(help="Usage to restore (the larger of this and the ledger's wins).")
    ] = 0,
    netns: NetnsOption = None,
    json_out: JsonOption = False,
) -> None:
    """Install (or replace, atomically) the host's nftables rules and tc ceiling, restoring the quota's usage."""
    from strongroom.egress.budget import period_start
    from strongroom.egress.kernel import Kernel, KernelRules

    start = period_start(time.time(), period_seconds)
    restore = max(0, restore_bytes)
    if ledger:
        restore = max(restore, _ledger_usage(ledger, host, start, signer))
    rules = KernelRules(host, gateway, quota_bytes, start, ceiling_bits, interface)
    reading = Kernel(netns).apply(rules, restore)
    if json_out:
        print_json(reading.to_json())
        return
    console.print(
        f"egress rules for {host} installed: only {gateway}, quota {reading.quota_bytes:,} bytes per period "
        f"({reading.used_bytes:,} used), rules {reading.rules_digest[:23]}"
    )


def _ledger_usage(url: str, host: str, start: int, signer: str | None) -> int:
    from strongroom.egress import records
    from strongroom.ledger.client import LedgerClient

    client = LedgerClient(url)
    try:
        found = client.query(type=records.CHECKPOINT, since=records.time_text(start), signer=signer or "")
    finally:
        client.close()
    body = records.last_checkpoint([e for _, e in found if signer is None or e.signer == signer], host, start)
    return 0 if body is None else max(int(body.get("kernel_used_bytes", 0)), 0)


@egress_app.command("status")
def status_command(netns: NetnsOption = None, json_out: JsonOption = False) -> None:
    """The kernel layer as it is now: rules, quota used, counters, tc ceiling."""
    from strongroom.egress.kernel import Kernel

    reading = Kernel(netns).read()
    if json_out:
        print_json(reading.to_json())
        return
    if not reading.installed:
        raise CommandError(
            "no egress rules installed (or incomplete): output is not restricted",
            hint="install them with 'strongroom egress apply' (--json shows the reading and exits 0)",
        )
    state = "EXHAUSTED" if reading.exhausted else "within budget"
    console.print(
        f"host {reading.host_id}: only {reading.gateway}; quota {reading.used_bytes:,} of {reading.quota_bytes:,} "
        f"bytes used ({state}); sent {reading.counter_bytes:,} bytes in {reading.counter_packets:,} packets; "
        f"dropped {reading.dropped_packets:,} packets; ceiling {reading.ceiling_bits_per_s or 'none'} bit/s; "
        f"rules {reading.rules_digest[:23]}"
    )


@gateway_app.command("serve")
def gateway_serve(
    config: Annotated[Path, typer.Option("--config", help="The gateway's JSON configuration.")],
) -> None:
    """Serve the narrow interface until SIGTERM, writing checkpoints, alarms and exhaustion to the ledger."""
    import logging

    from strongroom.egress.gateway import GatewayConfig, run

    settings = GatewayConfig.load(config)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    def ready(gateway: object) -> None:
        console.print(f"egress gateway for {settings.host_id} on {settings.listen} -> {settings.upstream}")

    _run_async(run(settings, ready=ready))


@inference_app.command("serve")
def inference_serve(
    listen: Annotated[str, typer.Option(help="ADDRESS:PORT to listen on.")],
    embedding: Annotated[
        list[str] | None, typer.Option(help="NAME=DIRECTORY of an embedding model (repeatable).")
    ] = None,
    generation: Annotated[
        list[str] | None, typer.Option(help="NAME=SEED of a small seeded GPT-2 (repeatable).")
    ] = None,
) -> None:
    """Serve models on the narrow interface (what a weight host runs behind its gateway)."""
    require("torch", "strongroom egress inference serve")
    from strongroom.egress.inference import load_backends, serve

    def pairs(items: list[str] | None) -> dict[str, str]:
        out = {}
        for item in items or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise BudgetError(f"{item!r} is not NAME=VALUE")
            out[name] = value
        return out

    address, _, port = listen.rpartition(":")
    backends = load_backends(
        {n: Path(v) for n, v in pairs(embedding).items()}, {n: int(v) for n, v in pairs(generation).items()}
    )

    def ready(bound: int) -> None:
        console.print(f"inference server on {address}:{bound}: {', '.join(sorted(backends))}")

    _run_async(serve(backends, address, int(port), ready))


def _run_async(coroutine: object) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(coroutine)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.add_typer(egress_app, name="egress")
