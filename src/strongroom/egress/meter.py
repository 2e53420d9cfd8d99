"""The gateway's meter: bytes read from the host per period, per model, against the host's budget; and a
token bucket for the rate.

The budget is checked twice. Before a request goes to the host: refused if the period's usage plus the
response caps of the requests already in flight has reached the budget. After the response came back: its
bytes are counted (they left the host), and if they take the usage past the budget the response is not
delivered. So nothing is ever delivered past the budget, and the host sends at most one response past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenBucket:
    """Bytes per second with a burst capacity; a response may overdraw it, after which requests wait."""

    rate: float
    capacity: float
    tokens: float = math.nan
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.tokens):
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def wait_seconds(self, now: float) -> float:
        """0 when a request may go now; else how long until the bucket is positive again."""
        self._refill(now)
        if self.tokens > 0:
            return 0.0
        return math.inf if self.rate <= 0 else (1.0 - self.tokens) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.tokens -= amount

    def tighten(self, factor: float) -> None:
        self.rate *= factor
        self.capacity *= factor
        self.tokens = min(self.tokens, self.capacity)


@dataclass
class GatewayMeter:
    """One host's usage in the current period."""

    host_id: str
    budget_bytes: int
    period_seconds: int
    period_start: int
    used_bytes: int = 0  # bytes read from the host this period (what the budget counts)
    delivered_bytes: int = 0  # bytes the gateway sent on to clients this period
    total_bytes: int = 0  # bytes read from the host since start, every period (the reconciled meter)
    requests: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0  # response caps reserved by requests at the host now
    exhausted: bool = False

    @property
    def remaining(self) -> int:
        return max(0, self.budget_bytes - self.used_bytes)

    def admit(self, reserve: int) -> bool:
        """Reserve ``reserve`` bytes for a request about to go to the host, if the budget allows it."""
        if self.used_bytes + self.in_flight >= self.budget_bytes:
            self.exhausted = self.exhausted or self.used_bytes >= self.budget_bytes
            return False
        self.in_flight += reserve
        return True

    def settle(self, reserve: int, model_id: str, read_bytes: int) -> bool:
        """Count a response's bytes; True if delivering it stays within the budget."""
        self.in_flight -= reserve
        self.used_bytes += read_bytes
        self.total_bytes += read_bytes
        self.by_model[model_id] = self.by_model.get(model_id, 0) + read_bytes
        self.requests += 1
        if self.used_bytes >= self.budget_bytes:
            self.exhausted = True
        return self.used_bytes <= self.budget_bytes

    def count_unsettled(self, reserve: int, read_bytes: int) -> None:
        """Bytes read from the host for a request that failed (timeout, bad response): counted all the same."""
        self.in_flight -= reserve
        self.used_bytes += read_bytes
        self.total_bytes += read_bytes
        if self.used_bytes >= self.budget_bytes:
            self.exhausted = True

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def roll(self, period_start: int) -> None:
        """A new period: usage starts again (the cumulative meter does not)."""
        self.period_start = period_start
        self.used_bytes = 0
        self.delivered_bytes = 0
        self.requests = 0
        self.by_model = {}
        self.refused = {}
        self.exhausted = False

    def to_json(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "delivered_bytes": self.delivered_bytes,
            "total_bytes": self.total_bytes,
            "budget_bytes": self.budget_bytes,
            "requests": self.requests,
            "by_model": dict(sorted(self.by_model.items())),
            "refused": dict(sorted(self.refused.items())),
        }
