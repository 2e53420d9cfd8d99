"""Anomaly detection on a host's bytes per interval: an EWMA baseline and a one-sided CUSUM, deterministic.

For each interval's byte count ``x``: ``sigma = max(sqrt(var), rel_floor * mean, floor_bytes)``,
``z = (x - mean) / sigma``, ``S = max(0, S + z - k)``; an alarm when ``S > h`` (and ``S`` restarts at 0).
The baseline learns only from what it saw, clipped to ``mean + h * sigma``, so an attack does not teach the
detector that it is normal; the first ``warmup`` intervals only learn. The state is a handful of floats
carried in every checkpoint, so a restarted gateway continues where it stopped and an auditor replaying the
checkpoints gets the same alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DetectorSettings:
    alpha: float = 0.2  # EWMA weight of the newest interval
    k: float = 0.5  # CUSUM slack, in sigmas
    h: float = 5.0  # CUSUM threshold, in sigmas
    warmup: int = 5  # intervals that only learn
    floor_bytes: float = 1024.0  # sigma is never below this
    rel_floor: float = 0.1  # nor below this fraction of the mean

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> DetectorSettings:
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in (raw or {}).items() if hasattr(cls(), k)})


@dataclass(frozen=True)
class Observation:
    x: float
    z: float
    cusum: float
    alarm: bool


@dataclass
class Detector:
    settings: DetectorSettings = field(default_factory=DetectorSettings)
    mean: float = 0.0
    var: float = 0.0
    cusum: float = 0.0
    n: int = 0

    def sigma(self) -> float:
        s = self.settings
        return max(math.sqrt(max(self.var, 0.0)), s.rel_floor * abs(self.mean), s.floor_bytes)

    def observe(self, x: float) -> Observation:
        s = self.settings
        if self.n < s.warmup:
            self._learn(x)
            return Observation(x, 0.0, 0.0, False)
        sigma = self.sigma()
        z = (x - self.mean) / sigma
        self.cusum = max(0.0, self.cusum + z - s.k)
        alarm = self.cusum > s.h
        seen = self.cusum
        if alarm:
            self.cusum = 0.0
        self._learn(min(x, self.mean + s.h * sigma))
        return Observation(x, z, seen, alarm)

    def _learn(self, x: float) -> None:
        a = self.settings.alpha
        if self.n == 0:
            self.mean, self.var = x, 0.0
        else:
            diff = x - self.mean
            self.mean += a * diff
            self.var = (1 - a) * (self.var + a * diff * diff)
        self.n += 1

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "cusum": self.cusum, "n": self.n}

    def restore(self, raw: Any) -> None:
        if isinstance(raw, dict):
            self.mean = float(raw.get("mean", 0.0))
            self.var = float(raw.get("var", 0.0))
            self.cusum = float(raw.get("cusum", 0.0))
            self.n = int(raw.get("n", 0))
