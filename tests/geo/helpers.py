"""Reports made without a network: landmark and host keys sign exactly what the protocol would, with RTTs
chosen by the test (for pure tests of verification, commitments, cross-checks and replay rules)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from strongroom.geo.landmarks import Landmark, LandmarkSet
from strongroom.geo.protocol import Report, Sample, epoch_now, now_text, response_message
from strongroom.geo.region import C_VACUUM_KM_PER_MS
from strongroom.signing import Signer, SigningKey

from .netlab import PLACES, distance_km, fibre_rtt_ms

US_LANDMARKS = ["kansas-city", "omaha", "denver", "dallas", "oklahoma-city", "st-louis", "tulsa", "salina"]


@dataclass
class World:
    """Landmarks at real places with their keys, and a host key."""

    names: list[str]
    signers: dict[str, Signer] = field(default_factory=dict)
    host_key: Signer = field(default_factory=lambda: Signer.generate("ed25519"))
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            self.signers.setdefault(name, Signer.generate("ed25519"))
            if name not in self.positions:
                self.positions[name] = PLACES[name]

    def landmarks(self) -> LandmarkSet:
        return LandmarkSet(Landmark(n, self.signers[n].verifier, *self.positions[n]) for n in self.names)


def report(
    landmark: str,
    signer: SigningKey,
    host: str,
    host_key: SigningKey,
    rtts_ms: Iterable[float],
    epoch: int | None = None,
    answer_key: SigningKey | None = None,
    nonces: list[str] | None = None,
) -> dict[str, Any]:
    """A landmark's signed report whose samples are answered by ``answer_key`` (default: the host's key)."""
    epoch = epoch_now() if epoch is None else epoch
    answering = answer_key or host_key
    samples = []
    for i, rtt in enumerate(rtts_ms):
        nonce = nonces[i] if nonces else secrets.token_bytes(32).hex()
        signature = answering.sign(response_message(nonce, landmark, host, epoch))
        samples.append(Sample(nonce, int(rtt * 1e6), signature))
    body = Report(landmark, host, host_key.key_id, epoch, "udp", tuple(samples), 0, now_text())
    return body.signed(signer)


def honest_reports(
    world: World,
    host: str,
    true_position: tuple[float, float],
    overhead_ms: float = 0.8,
    samples: int = 10,
    epoch: int | None = None,
    names: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Reports as fibre-speed paths from ``true_position`` would give, plus a fixed processing overhead."""
    out = []
    for name in names or world.names:
        base = fibre_rtt_ms(true_position, world.positions[name]) + overhead_ms
        rtts = [base + 0.05 * i for i in range(samples)]
        out.append(report(name, world.signers[name], host, world.host_key, rtts, epoch))
    return out


def vacuum_rtt_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    return 2 * distance_km(a, b) / C_VACUUM_KM_PER_MS
