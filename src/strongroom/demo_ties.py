"""The demo's weight host behind egress control and location checks (issues 15 and 17), rootless.

- Egress: the host's budget from ``strongroom.egress.budget`` and the sealed model's size; its gateway key
  enrolled by both officers as an appender bound to the host; one real ``Gateway.tick`` on loopback appends
  a signed ``egress.checkpoint`` from the gateway's meter. After the release, the host serves the model from
  memory (``strongroom.egress.inference``) behind that gateway, and the demo's embedding request goes
  through it: schema-checked, metered against the day's budget, recorded in the next checkpoint.
  Installing the nftables quota needs root (the namespace suite does that), so the checkpoint says "no
  kernel rules", and custody's egress check is shown as the refusal it would give: the demo's policy
  therefore does not require egress control.
- Location: four landmarks, enrolled by both officers, serve real signed challenges on loopback; the host
  answers with its identity key; the verifier (an appender both officers enrolled) computes the verdict and
  appends it; the model's policy requires a fresh ``IN(US)``, which custody checks before the release.
  Loopback round trips are well under a millisecond, so the landmarks are placed around the geographic
  centre of the contiguous US (near Lebanon, Kansas) where a disk of hundreds of kilometres stays in the US.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strongroom.custody import admin
from strongroom.custody.conditions import egress_reasons
from strongroom.custody.host import HostSession
from strongroom.custody.policy import EgressRule, LocationRule
from strongroom.custody.service import CustodyService
from strongroom.signing import Signer

Say = Callable[[str], None]
Officers = Callable[[admin.Proposal], dict[str, Any]]
COUNTRIES = ("US",)
LANDMARKS = [("lbn-1", 39.83, -98.58), ("lbn-2", 39.95, -98.40), ("lbn-3", 39.70, -98.75), ("lbn-4", 39.90, -98.80)]


def location_rule() -> LocationRule | None:
    """The demo's location requirement, or None where the geo extra (shapely, pyproj, countryinfo) is absent."""
    try:
        import countryinfo  # noqa: F401
        import pyproj  # noqa: F401
        import shapely  # noqa: F401
    except ImportError:
        return None
    return LocationRule(COUNTRIES, 3600)


def guard_egress(
    officers: Officers, data: Path, url: str, host_id: str, model_id: str, size: int, custody: CustodyService, say: Say
) -> tuple[dict[str, Any], Signer, Any]:
    """Budget the host, enrol its gateway, append one checkpoint from the gateway's meter; say what custody sees."""
    from strongroom.custody.projection import EGRESS_TYPES
    from strongroom.egress.budget import ModelHolding, plan
    from strongroom.egress.gateway import Gateway, GatewayConfig
    from strongroom.egress.records import EgressLedger, appender_files
    from strongroom.egress.schema import ModelSpec
    from strongroom.egress.state import EgressState

    budget = plan([ModelHolding(model_id, size, (host_id,))])
    fleet, host = budget.fleets[model_id], budget.hosts[host_id]
    say(
        f"egress budget for {host_id}: {host.quota_bytes:,} bytes/day at the kernel, {host.gateway_bytes:,} at the "
        f"gateway (model {size:,} bytes, /{fleet.policy.compression:g} compression assumed): moving the weights out "
        f"at full budget takes {fleet.attacker_seconds() / 86_400:.0f} days"
    )
    key = Signer.generate("ed25519")
    appender_files(data, f"gw-{host_id}", key.verifier)
    officers(admin.enrol_appender(f"gw-{host_id}", key.verifier.pem().decode(), sorted(EGRESS_TYPES), host_id))
    spec = ModelSpec("minilm", model_id, "embedding", dimension=384)
    config = GatewayConfig(host_id, "127.0.0.1:0", "127.0.0.1:9", {"minilm": spec}, host.gateway_bytes)
    ledger = EgressLedger(url, key)
    try:
        asyncio.run(Gateway(config, ledger).tick())
        (index, entry), *_ = reversed(ledger.client.query(type="egress.checkpoint", signer=key.key_id))
    finally:
        ledger.close()
    body = entry.body
    say(
        f"gateway for {host_id} (key enrolled by both officers) checkpointed at ledger entry {index}: "
        f"{body['bytes_used']:,} of {body['budget_bytes']:,} bytes used this period; kernel rules installed: "
        f"{body['rules_installed']} (nftables needs root: 'strongroom egress apply' on the host)"
    )
    folded = EgressState()
    folded.apply(entry, index)
    reasons = egress_reasons(EgressRule(), folded.status(host_id, custody.clock().timestamp()), {})
    say(f"custody's egress check for {host_id}: {'; '.join(reasons) or 'passes'} (so this policy does not require it)")
    summary = {"budget": host.to_json(), "fleet": fleet.to_json(), "checkpoint_index": index, "egress_check": reasons}
    return summary, key, config


class _LoadedEmbedding:
    """The released model, in this process's memory, as the inference server's embedding backend."""

    kind = "embedding"

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        from strongroom.seal.transformers_loader import mean_pooled_embedding

        vectors = mean_pooled_embedding(self.loaded, [str(t) for t in body["input"]])
        return {"model": body["model"], "embeddings": [[round(float(v), 6) for v in row] for row in vectors]}


def serve_behind_gateway(key: Signer, config: Any, url: str, loaded: Any, sentence: str, say: Say) -> dict[str, Any]:
    """The host's inference server (the released model in memory) behind its gateway on loopback: the demo's
    embedding request goes through the gateway, which checks it against the narrow schema and meters the
    reply against the day's budget, and a checkpoint records what it counted."""
    import dataclasses

    import httpx

    from strongroom.egress.gateway import Gateway
    from strongroom.egress.inference import InferenceServer
    from strongroom.egress.records import EgressLedger

    async def run() -> tuple[httpx.Response, dict[str, Any]]:
        server = InferenceServer({"minilm": _LoadedEmbedding(loaded)})
        port = await server.start("127.0.0.1", 0)
        ledger = EgressLedger(url, key)
        gateway = Gateway(dataclasses.replace(config, upstream=f"127.0.0.1:{port}"), ledger)
        await gateway.start()
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
                reply = await client.post(
                    f"http://127.0.0.1:{gateway.port}/v1/embeddings", json={"model": "minilm", "input": [sentence]}
                )
            await gateway.tick()
            return reply, gateway.snapshot()
        finally:
            await gateway.stop(final=False)
            await server.stop()
            ledger.close()

    reply, snapshot = asyncio.run(run())
    if reply.status_code == 200:
        dims = len(reply.json()["embeddings"][0])
        outcome = f"served ({dims} dims), {snapshot['used_bytes']:,} of {snapshot['budget_bytes']:,} bytes counted"
    else:
        outcome = f"refused by the gateway (HTTP {reply.status_code}: {reply.json().get('error', reply.text)})"
    say(f"the embedding request through {config.host_id}'s gateway (schema-checked, metered): {outcome}")
    return {"status": reply.status_code, "gateway": snapshot}


def guard_location(officers: Officers, data: Path, url: str, host: HostSession, say: Say) -> dict[str, Any]:
    """Enrol landmarks and a verifier, measure the host on loopback, append its verdict."""
    from strongroom.geo.landmarks import Landmark, LandmarkSet
    from strongroom.geo.prover import Target, prove_async
    from strongroom.geo.service import LandmarkService, ServiceSettings, bind, serve
    from strongroom.geo.verify import ENTRY_TYPE, assess, statement
    from strongroom.ledger.client import LedgerClient
    from strongroom.ledger.entries import make_entry

    keys = {name: Signer.generate("ed25519") for name, _, _ in LANDMARKS}
    landmarks = LandmarkSet()
    for name, latitude, longitude in LANDMARKS:
        landmark = Landmark(name, keys[name].verifier, latitude, longitude, "demo: surveyed by GNSS")
        officers(admin.enrol_landmark(landmark.enrolment_body()))
        landmarks.add(landmark)
    verifier = Signer.generate("ed25519")
    folder = data / "appenders"
    (folder / "geo-verifier.pub").write_bytes(verifier.verifier.pem())
    (folder / "geo-verifier.types").write_text(ENTRY_TYPE + "\n")
    officers(admin.enrol_appender("geo-verifier", verifier.verifier.pem().decode(), [ENTRY_TYPE]))

    async def measure() -> Any:
        stop, servers, targets = asyncio.Event(), [], []
        for name, _, _ in LANDMARKS:
            udp, tcp = bind("127.0.0.1", 0)
            servers.append(
                asyncio.create_task(serve(LandmarkService(name, keys[name], ServiceSettings()), udp, tcp, stop))
            )
            targets.append(Target(landmarks.get(name), "127.0.0.1", tcp.getsockname()[1]))
        try:
            return await prove_async(host.host_id, host.identity, targets, samples=6, timeout=10.0)
        finally:
            stop.set()
            await asyncio.gather(*servers, return_exceptions=True)

    run = asyncio.run(measure())
    assessment = assess(host.host_id, host.identity.verifier, list(run.reports.values()), landmarks, allowed=COUNTRIES)
    body, _opening = statement(assessment)  # the opening stays with the verifier, for auditors
    client = LedgerClient(url)
    try:
        receipt = client.append(make_entry(ENTRY_TYPE, body, verifier))
    finally:
        client.close()
    fastest = min(s["rtt_ns"] for r in run.reports.values() for s in r["report"]["samples"]) / 1e6
    say(
        f"{len(LANDMARKS)} landmarks (enrolled by both officers) measured {host.host_id} on loopback (fastest round "
        f"trip {fastest:.2f} ms); verdict {assessment.verdict.label()}, on the ledger as entry {receipt['index']} "
        "with only the country revealed"
    )
    return {"verdict": body, "index": receipt["index"]}
