"""Egress budgets sized by the weights: a fleet budget per period, split into host shares that never add up
to more than it.

The budget answers one question: at full budget, how long would an attacker need to move the weights out?
With a model of ``size`` bytes (its sealed plaintext), an attacker who can compress them ``compression`` times
(default 100, the top of the 16-100x range) must move ``size / compression`` bytes. The fleet budget per
period is chosen so that this takes at least the detection horizon (default 90 days)::

    effective   = ceil(size / compression)
    fleet       = floor(effective * period / horizon)          # bytes per period, all hosts together
    fleet       = min(fleet, cap)                               # if a policy cap is set
    attacker    = effective / fleet * period                    # >= horizon (longer with a cap)

Every host that holds the model's key shares the fleet budget: ``share_h = floor(fleet * w_h / sum(w))``
(equal weights by default), so the shares never sum above the fleet budget however many hosts collude.
A host that holds several models' keys could spend any of its bytes on any of them, so its quota is the
*smallest* of its shares: for every model, the quotas of the hosts holding it sum to at most its fleet
budget. The kernel quota (IP bytes, headers included) is the host's quota; the gateway's budget (bytes read
from the host's inference server) is ``gateway_fraction`` of it, so the gateway refuses with a clear
error before the kernel starts dropping packets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strongroom.egress.errors import BudgetError

DAY = 86_400
DEFAULT_COMPRESSION = 100.0
DEFAULT_HORIZON_DAYS = 90.0
DEFAULT_PERIOD = DAY
DEFAULT_GATEWAY_FRACTION = 0.8
DEFAULT_BURST_FACTOR = 4.0  # the gateway's rate lets a host spend its period's budget in a quarter period
DEFAULT_BUCKET_SECONDS = 60.0  # the token bucket holds a minute of the rate
MIN_CEILING_BITS = 1_000_000  # tc cannot shape usefully below ~1 Mbit/s; the quota is the real cap anyway


@dataclass(frozen=True)
class BudgetPolicy:
    """The assumptions a budget rests on; every field has a default that a policy may tighten."""

    compression: float = DEFAULT_COMPRESSION
    horizon_seconds: float = DEFAULT_HORIZON_DAYS * DAY
    period_seconds: int = DEFAULT_PERIOD
    cap_bytes: int | None = None  # an optional policy cap on the fleet budget per period
    gateway_fraction: float = DEFAULT_GATEWAY_FRACTION
    burst_factor: float = DEFAULT_BURST_FACTOR
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.compression) and self.compression >= 1):
            raise BudgetError(f"compression must be at least 1 (got {self.compression})")
        if not (math.isfinite(self.horizon_seconds) and self.horizon_seconds > 0):
            raise BudgetError("the detection horizon must be positive")
        if self.period_seconds <= 0 or self.period_seconds > self.horizon_seconds:
            raise BudgetError("the period must be positive and no longer than the detection horizon")
        if self.cap_bytes is not None and self.cap_bytes < 0:
            raise BudgetError("a policy cap cannot be negative")
        if not 0 < self.gateway_fraction <= 1:
            raise BudgetError("gateway_fraction must be in (0, 1]")
        if not (math.isfinite(self.burst_factor) and self.burst_factor >= 1):
            raise BudgetError("burst_factor must be at least 1")
        if not (math.isfinite(self.bucket_seconds) and self.bucket_seconds > 0):
            raise BudgetError("bucket_seconds must be positive")

    def to_json(self) -> dict[str, Any]:
        return {
            "compression": self.compression,
            "horizon_seconds": self.horizon_seconds,
            "period_seconds": self.period_seconds,
            "cap_bytes": self.cap_bytes,
            "gateway_fraction": self.gateway_fraction,
            "burst_factor": self.burst_factor,
            "bucket_seconds": self.bucket_seconds,
        }


@dataclass(frozen=True)
class FleetBudget:
    """One model's budget per period for all the hosts that hold its key together."""

    model_id: str
    size_bytes: int
    policy: BudgetPolicy
    effective_bytes: int  # what an attacker must move: ceil(size / compression)
    uncapped_bytes: int  # floor(effective * period / horizon)
    fleet_bytes: int  # min(uncapped, cap)

    @property
    def capped(self) -> bool:
        return self.fleet_bytes < self.uncapped_bytes

    def attacker_seconds(self, compressed: bool = True) -> float:
        """Seconds to move the weights at full fleet budget (compressed by the assumed factor, or raw)."""
        need = self.effective_bytes if compressed else self.size_bytes
        if self.fleet_bytes == 0:
            return math.inf
        return need / self.fleet_bytes * self.policy.period_seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "size_bytes": self.size_bytes,
            "policy": self.policy.to_json(),
            "effective_bytes": self.effective_bytes,
            "uncapped_bytes": self.uncapped_bytes,
            "fleet_bytes": self.fleet_bytes,
            "capped": self.capped,
            "attacker_days": _days(self.attacker_seconds()),
            "attacker_days_uncompressed": _days(self.attacker_seconds(compressed=False)),
        }


def _days(seconds: float) -> float | None:
    return None if math.isinf(seconds) else round(seconds / DAY, 3)


def fleet_budget(model_id: str, size_bytes: int, policy: BudgetPolicy | None = None) -> FleetBudget:
    """The fleet budget per period for a model of ``size_bytes`` (integers throughout, rounded down)."""
    policy = policy or BudgetPolicy()
    if size_bytes <= 0:
        raise BudgetError(f"model size must be positive (got {size_bytes})")
    effective = math.ceil(size_bytes / policy.compression)
    uncapped = math.floor(effective * policy.period_seconds / policy.horizon_seconds)
    fleet = uncapped if policy.cap_bytes is None else min(uncapped, policy.cap_bytes)
    return FleetBudget(model_id, size_bytes, policy, effective, uncapped, fleet)


def host_shares(fleet: FleetBudget, hosts: Iterable[str], weights: Mapping[str, float] | None = None) -> dict[str, int]:
    """Each host's share of ``fleet`` (rounded down): they sum to at most ``fleet.fleet_bytes``."""
    names = sorted(set(hosts))
    if not names:
        return {}
    given = {h: float((weights or {}).get(h, 1.0)) for h in names}
    if any(not math.isfinite(w) or w < 0 for w in given.values()):
        raise BudgetError("host weights must be finite and non-negative")
    total = sum(given.values())
    if total <= 0:
        return dict.fromkeys(names, 0)
    return {h: math.floor(fleet.fleet_bytes * given[h] / total) for h in names}


@dataclass(frozen=True)
class HostBudget:
    """What one host may send per period, and the rates that follow."""

    host_id: str
    models: tuple[str, ...]
    quota_bytes: int  # the kernel quota: IP bytes leaving the host per period
    gateway_bytes: int  # the gateway's budget: bytes read from the host's server per period
    rate_bytes_per_s: float  # the gateway's token-bucket refill rate
    bucket_bytes: int  # the token bucket's capacity
    ceiling_bits_per_s: int  # the tc rate ceiling on the host's link
    period_seconds: int

    def to_json(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "models": list(self.models),
            "quota_bytes": self.quota_bytes,
            "gateway_bytes": self.gateway_bytes,
            "rate_bytes_per_s": round(self.rate_bytes_per_s, 3),
            "bucket_bytes": self.bucket_bytes,
            "ceiling_bits_per_s": self.ceiling_bits_per_s,
            "period_seconds": self.period_seconds,
        }


def host_budget(
    host_id: str, shares: Mapping[str, int], policy: BudgetPolicy, max_response_bytes: int = 0
) -> HostBudget:
    """A host's budget from its share of each model it holds (``shares``: model id -> share): the smallest."""
    if not shares:
        raise BudgetError(f"host {host_id} holds no model's key: it has no egress budget")
    quota = min(shares.values())
    gateway = math.floor(quota * policy.gateway_fraction)
    rate = gateway / policy.period_seconds * policy.burst_factor
    bucket = max(math.ceil(rate * policy.bucket_seconds), max_response_bytes)
    ceiling = max(math.ceil(rate * 8 * policy.burst_factor), MIN_CEILING_BITS)
    return HostBudget(host_id, tuple(sorted(shares)), quota, gateway, rate, bucket, ceiling, policy.period_seconds)


@dataclass(frozen=True)
class ModelHolding:
    """A model, its sealed size and the hosts holding its key (with optional weights)."""

    model_id: str
    size_bytes: int
    hosts: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Fleet budgets per model and the budget of every host that follows from them."""

    policy: BudgetPolicy
    fleets: dict[str, FleetBudget]
    shares: dict[str, dict[str, int]]  # model id -> host -> share
    hosts: dict[str, HostBudget]

    def fleet_exposure(self, model_id: str) -> int:
        """The most bytes of this model that all its hosts together can send in a period (sum of quotas)."""
        return sum(self.hosts[h].quota_bytes for h in self.shares[model_id])

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_json(),
            "models": {
                m: {**f.to_json(), "shares": self.shares[m], "exposure_bytes": self.fleet_exposure(m)}
                for m, f in sorted(self.fleets.items())
            },
            "hosts": {h: b.to_json() for h, b in sorted(self.hosts.items())},
        }


def plan(holdings: Iterable[ModelHolding], policy: BudgetPolicy | None = None, max_response_bytes: int = 0) -> Plan:
    """Budgets for a fleet: per model, its fleet budget and host shares; per host, its quota and rates."""
    policy = policy or BudgetPolicy()
    fleets: dict[str, FleetBudget] = {}
    shares: dict[str, dict[str, int]] = {}
    for holding in holdings:
        if holding.model_id in fleets:
            raise BudgetError(f"model {holding.model_id} is listed twice")
        fleets[holding.model_id] = fleet_budget(holding.model_id, holding.size_bytes, policy)
        shares[holding.model_id] = host_shares(fleets[holding.model_id], holding.hosts, holding.weights)
    per_host: dict[str, dict[str, int]] = {}
    for model_id, split in shares.items():
        for host_id, share in split.items():
            per_host.setdefault(host_id, {})[model_id] = share
    hosts = {h: host_budget(h, s, policy, max_response_bytes) for h, s in per_host.items()}
    return Plan(policy, fleets, shares, hosts)


def period_start(now: float, period_seconds: int) -> int:
    """The start (Unix seconds, aligned to the epoch) of the period holding ``now``."""
    return int(now // period_seconds) * period_seconds
