"""Shared pieces for the custody tie-in tests: a host's egress gateway and a location verifier, each an
appender the officers enrolled, writing real signed entries over the ledger's HTTP append path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strongroom.custody import admin
from strongroom.egress.records import ALARM, CHECKPOINT, EXHAUSTED, EgressLedger, appender_files, time_text
from strongroom.geo.landmarks import Landmark, LandmarkSet
from strongroom.geo.protocol import epoch_now
from strongroom.signing import Signer

EGRESS_TYPES = [ALARM, CHECKPOINT, EXHAUSTED]
RULES_DIGEST = "sha256:" + "5" * 64
PERIOD = 86_400
Officers = Callable[..., dict[str, Any]]  # Admin.__call__: (proposal, *officer names)

# three landmarks around Wichita, Kansas (the officers enrol them; verdicts name their set's digest)
LANDMARKS = [("ict-1", 37.69, -97.34), ("ict-2", 37.80, -97.10), ("ict-3", 37.55, -97.55)]


def enrol_gateway(officers: Officers, data: Path, host_id: str, url: str) -> EgressLedger:
    """The host's gateway key: allowed egress types by the ledger (appender files) and by the officers."""
    key = Signer.generate("ed25519")
    appender_files(data, f"gw-{host_id}", key.verifier)
    officers(admin.enrol_appender(f"gw-{host_id}", key.verifier.pem().decode(), EGRESS_TYPES, host_id))
    return EgressLedger(url, key)


def enrol_verifier(officers: Officers, data: Path, url: str) -> EgressLedger:
    """A location verifier's key (``EgressLedger`` is only used for its signed HTTP append)."""
    key = Signer.generate("ed25519")
    folder = data / "appenders"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "geo.pub").write_bytes(key.verifier.pem())
    (folder / "geo.types").write_text("geo.verdict\n")
    officers(admin.enrol_appender("geo-verifier", key.verifier.pem().decode(), ["geo.verdict"]))
    return EgressLedger(url, key)


def enrol_landmarks(officers: Officers) -> str:
    """Enrol the three landmarks (two officers each); returns the enrolled set's digest."""
    found = LandmarkSet()
    for name, latitude, longitude in LANDMARKS:
        landmark = Landmark(name, Signer.generate("ed25519").verifier, latitude, longitude, "GNSS survey")
        officers(admin.enrol_landmark(landmark.enrolment_body()))
        found.add(landmark)
    return found.digest


def checkpoint(
    host_id: str,
    *,
    installed: bool = True,
    exhausted: bool = False,
    used: int = 1_000,
    budget: int = 1_000_000,
    now: float | None = None,
) -> dict[str, Any]:
    """A checkpoint body as ``Gateway._checkpoint_body`` writes it."""
    now = time.time() if now is None else now
    return {
        "host": host_id,
        "models": [],
        "period_start": time_text(now - now % PERIOD),
        "period_seconds": PERIOD,
        "interval_seconds": 60.0,
        "bytes_used": used,
        "budget_bytes": budget,
        "quota_bytes": budget * 5 // 4 if installed else 0,
        "kernel_used_bytes": used,
        "rules_installed": installed,
        "rules_digest": RULES_DIGEST if installed else "none",
        "exhausted": exhausted,
        "tightened": False,
        "rate_bytes_per_s": 46.3,
        "meters": {"gateway": {}, "kernel": None, "reconcile": None},
        "detector": {},
        "final": False,
    }


def alarm(host_id: str, model_id: str, alarm_id: str = "a1" * 16, kind: str = "meter-gap") -> dict[str, Any]:
    return {"host": host_id, "model_id": model_id, "alarm_id": alarm_id, "kind": kind, "detail": {"gap": 0.3}}


def verdict(
    host_id: str, landmark_set: str, outcome: str = "IN", country: str = "US", age_s: int = 0
) -> dict[str, Any]:
    """A ``geo.verdict`` body as ``geo.verify.statement`` writes it, for an epoch ``age_s`` ago."""
    return {
        "host": host_id,
        "verdict": outcome,
        "country": country if outcome == "IN" else "ZZ",
        "epoch": epoch_now() - age_s // 60,
        "landmark_set": landmark_set,
        "commitment": "sha256:" + "c" * 64,
        "method": "strongroom-geo/v1",
    }
