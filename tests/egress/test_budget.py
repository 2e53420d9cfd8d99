"""Budget math, the detector, reconciliation, EgressState and the plan command: pure and fast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom.cli.main import app
from strongroom.egress import records
from strongroom.egress.budget import DAY, BudgetPolicy, ModelHolding, fleet_budget, host_shares, plan
from strongroom.egress.detector import Detector, DetectorSettings
from strongroom.egress.errors import BudgetError
from strongroom.egress.reconcile import reconcile
from strongroom.egress.state import EgressState
from strongroom.keys import LocalKeyring
from strongroom.ledger.entries import build_entry, parse_entry
from strongroom.signing import Signer

MINILM_BYTES = 91_618_861  # the sealed all-MiniLM-L6-v2 directory, every file (model.safetensors is 90.9 MB)


def test_fleet_budget_formula_minilm_and_one_terabyte() -> None:
    small = fleet_budget("minilm", MINILM_BYTES)
    assert small.effective_bytes == math.ceil(MINILM_BYTES / 100) == 916_189
    assert small.fleet_bytes == math.floor(916_189 * DAY / (90 * DAY)) == 10_179
    assert 90 <= small.attacker_seconds() / DAY < 90.01
    big = fleet_budget("big", 10**12)
    assert big.fleet_bytes == 111_111_111  # 10 GB to move over 90 days: ~111 MB a day for the whole fleet
    assert big.attacker_seconds(compressed=False) / DAY == pytest.approx(9000, rel=1e-6)
    capped = fleet_budget("big", 10**12, BudgetPolicy(cap_bytes=50_000_000))
    assert capped.capped and capped.fleet_bytes == 50_000_000 and capped.attacker_seconds() / DAY == 200


@pytest.mark.parametrize("hosts", [1, 2, 3, 7, 64])
def test_host_shares_never_sum_above_the_fleet_budget(hosts: int) -> None:
    fleet = fleet_budget("m", 123_456_789_012)
    names = [f"h{i}" for i in range(hosts)]
    shares = host_shares(fleet, names)
    assert sum(shares.values()) <= fleet.fleet_bytes
    assert fleet.fleet_bytes - sum(shares.values()) < hosts  # rounding only
    weighted = host_shares(fleet, names, {"h0": 3.0})
    assert sum(weighted.values()) <= fleet.fleet_bytes


def test_a_host_holding_several_models_gets_its_smallest_share() -> None:
    result = plan(
        [ModelHolding("a", 9 * 10**11, ("h1", "h2")), ModelHolding("b", 10**10, ("h2", "h3"))],
        BudgetPolicy(),
        max_response_bytes=4096,
    )
    assert result.hosts["h2"].quota_bytes == min(result.shares["a"]["h2"], result.shares["b"]["h2"])
    for model in ("a", "b"):  # what all hosts of a model can send never exceeds that model's fleet budget
        assert result.fleet_exposure(model) <= result.fleets[model].fleet_bytes
    h1 = result.hosts["h1"]
    assert h1.gateway_bytes == math.floor(h1.quota_bytes * 0.8) and h1.bucket_bytes >= 4096
    assert json.loads(json.dumps(result.to_json()))["models"]["a"]["exposure_bytes"] == result.fleet_exposure("a")


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(BudgetError):
        BudgetPolicy(compression=0.5)
    with pytest.raises(BudgetError):
        BudgetPolicy(period_seconds=100 * DAY)
    with pytest.raises(BudgetError):
        fleet_budget("m", 0)


def test_plan_command_on_the_sealed_minilm(model_dir: Path, keyring: LocalKeyring, tmp_path: Path) -> None:
    from strongroom.manifest.sealing import seal_model

    sealed = tmp_path / "sealed"
    summary = seal_model(model_dir, sealed, keyring)
    result = CliRunner().invoke(app, ["egress", "plan", str(sealed), "--host", "a", "--host", "b", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)["models"][summary["model_id"]]
    assert figures["size_bytes"] == MINILM_BYTES
    assert figures["fleet_bytes"] == 10_179 and figures["shares"] == {"a": 5089, "b": 5089}
    text = CliRunner().invoke(app, ["egress", "plan", "big", "--bytes", str(10**12)])
    assert "111.11 MB per day" in text.output and "90.0 days compressed" in text.output


def test_detector_is_quiet_on_steady_traffic_and_alarms_on_a_step() -> None:
    detector = Detector(DetectorSettings(warmup=5))
    steady = [10_000 + (i * 7919) % 3000 for i in range(60)]
    assert not any(detector.observe(x).alarm for x in steady)
    fired = [detector.observe(40_000).alarm for _ in range(5)]
    assert any(fired) and fired.index(True) <= 2
    again = Detector(DetectorSettings(warmup=5))  # deterministic: the same inputs give the same alarms
    assert [again.observe(x).alarm for x in [*steady, *[40_000] * 5]][-5:] == fired
    restored = Detector(DetectorSettings(warmup=5))
    restored.restore(detector.to_json())
    assert restored.to_json() == detector.to_json()


def test_reconcile_threshold_and_floor() -> None:
    assert not reconcile(1_000_000, 1_000_000 + 700 * 52, 700).alarm  # headers only: agree
    gap = reconcile(1_000_000, 1_300_000 + 700 * 52, 700)
    assert gap.alarm and gap.gap_bytes == 300_000
    assert not reconcile(10_000, 14_000, 0).alarm  # 40% but under the absolute floor (a reply in flight)


def _entry(signer: Signer, kind: str, body: dict[str, object], time: str) -> object:
    return parse_entry(build_entry(kind, body, signer, time).raw)


def test_egress_state_folds_entries() -> None:
    gw, stranger = Signer.generate("ed25519"), Signer.generate("ed25519")
    start = records.time_text(1_800_000_000 // DAY * DAY)
    base = {"host": "h1", "period_start": start, "period_seconds": DAY, "quota_bytes": 1000, "meters": {}}
    checkpoint = {**base, "bytes_used": 10, "budget_bytes": 800, "rules_installed": True, "rules_digest": "sha256:x"}
    t0 = records.parse_time(start)
    state = EgressState(trusted=frozenset({gw.key_id}))
    state.apply(_entry(gw, records.CHECKPOINT, checkpoint, records.time_text(t0 + 60)), 1)  # type: ignore[arg-type]
    fresh = state.status("h1", t0 + 90)
    assert fresh.refusal() is None and fresh.checkpoint_age == 30 and fresh.rules_installed
    assert "300s" in (state.status("h1", t0 + 1000).refusal() or "")  # stale
    assert "no egress checkpoint" in (state.status("h9", t0).refusal() or "")
    no_rules = {**checkpoint, "rules_installed": False, "quota_bytes": 0, "rules_digest": "none"}
    state.apply(_entry(gw, records.CHECKPOINT, no_rules, records.time_text(t0 + 120)))  # type: ignore[arg-type]
    assert "no kernel rules" in (state.status("h1", t0 + 130).refusal() or "")
    state.apply(_entry(gw, records.CHECKPOINT, checkpoint, records.time_text(t0 + 140)))  # type: ignore[arg-type]
    spent = {"host": "h1", "model_id": "m", "period_start": start, "period_seconds": DAY}
    spent |= {"meter": "gateway", "used_bytes": 800, "budget_bytes": 800}
    state.apply(_entry(gw, records.EXHAUSTED, spent, records.time_text(t0 + 150)))  # type: ignore[arg-type]
    assert state.status("h1", t0 + 160).exhausted
    assert not state.status("h1", t0 + DAY + 10).exhausted  # a new period
    alarm = {"host": "h1", "model_id": "m", "alarm_id": "ab" * 16, "kind": "meter-gap", "detail": {"gap_bytes": 5}}
    state.apply(_entry(gw, records.ALARM, alarm, records.time_text(t0 + 170)))  # type: ignore[arg-type]
    forged = {**alarm, "alarm_id": "cd" * 16}
    assert not state.apply(_entry(stranger, records.ALARM, forged, records.time_text(t0 + 171)), 7)  # type: ignore[arg-type]
    assert state.ignored == [7]
    status = state.status("h1", t0 + 180)
    assert [(a.kind, a.model_ids) for a in status.open_alarms] == [("meter-gap", ("m",))]
    state.clear("ab" * 16)
    assert state.status("h1", t0 + 180).open_alarms == ()


def test_a_kernel_reading_inside_the_gateways_bracket_is_no_gap() -> None:
    # the gateway counted 470,600 by the time the kernel's reading returned, 449,431 when it was asked
    bracketed = reconcile(449_000, 449_431 + 300 * 52, 300, gateway_high=470_600)
    assert not bracketed.alarm and bracketed.gap_bytes == 0 and bracketed.gateway_bytes == 449_431
    # without the bracket the same figures are a 4.5% gap: the false alarm this removes
    assert reconcile(470_600, 449_431 + 300 * 52, 300).alarm
    # traffic around the gateway is outside any bracket
    assert reconcile(449_000, 749_431 + 300 * 52, 300, gateway_high=470_600).alarm
