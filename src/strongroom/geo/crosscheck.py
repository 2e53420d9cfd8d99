"""Landmarks measuring each other (VerLoc style): a landmark whose RTTs disagree with its claimed place is
flagged and left out of verdicts.

Each landmark is measured by its peers exactly as a host is (``prover.prove`` with the landmark's own key and
id). For each measured pair, with ``d`` the geodesic distance between the two *claimed* positions and ``rtt``
the smallest RTT:

- **faster than light**: ``d > c_vacuum * rtt / 2``: impossible if both told the truth; one of them is
  nearer the other than it claims (or the report is forged);
- **too slow**: ``rtt > stretch * 2 * d / fibre + slack``: far slower than any reasonable path for the
  claimed distance; one of them is farther than it claims (or adds delay on purpose). The fibre speed and
  ``stretch`` appear only here, where they can only raise suspicion; no distance bound that could grant an IN
  ever uses them.

A pair that fails accuses both landmarks. A landmark is flagged when more than ``threshold`` (default half)
of the pairs it takes part in fail, with at least ``min_pairs`` pairs: a liar disagrees with most honest
peers, while each honest landmark disagrees only with the liars, a minority (VerLoc's argument; it tolerates
up to 20% malicious nodes). Flags are advisory input to ``verify.assess`` (``flagged=``) and are committed in
its record; the officers record lasting ones as ``geo.landmark`` ``flag`` changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.geo.errors import ForeignKeyError, ProtocolError, ReplayError
from strongroom.geo.landmarks import LandmarkSet
from strongroom.geo.protocol import check_samples, verify_report
from strongroom.geo.region import GEOD, bound_km


@dataclass(frozen=True)
class CrossCheckSettings:
    fibre_km_per_ms: float = 200.0
    stretch: float = 3.0
    slack_ms: float = 5.0
    threshold: float = 0.5
    min_pairs: int = 2
    min_samples: int = 3


@dataclass(frozen=True)
class PairCheck:
    measurer: str
    measured: str
    distance_km: float
    rtt_ms: float
    bound_km: float
    problem: str | None


@dataclass(frozen=True)
class CrossCheck:
    pairs: list[PairCheck]
    flagged: dict[str, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # report index -> why it was not used


def cross_check(
    reports: Sequence[Mapping[str, Any]], landmarks: LandmarkSet, settings: CrossCheckSettings | None = None
) -> CrossCheck:
    """Check every landmark-to-landmark report; flag landmarks that disagree with most of their peers."""
    settings = settings or CrossCheckSettings()
    pairs: list[PairCheck] = []
    refused: dict[int, str] = {}
    for index, value in enumerate(reports):
        try:
            measurer, report = verify_report(value, landmarks)
            measured = landmarks.get(report.host)
            check_samples(report, measured.landmark_id, measured.verifier)
        except (ProtocolError, ForeignKeyError, ReplayError) as exc:
            refused[index] = str(exc)
            continue
        except Exception as exc:  # an unknown landmark named as host
            refused[index] = str(exc)
            continue
        if len(report.samples) < settings.min_samples or measured.landmark_id == measurer.landmark_id:
            refused[index] = "too few samples, or a landmark measuring itself"
            continue
        _, _, metres = GEOD.inv(measurer.longitude, measurer.latitude, measured.longitude, measured.latitude)
        distance = float(metres) / 1000.0
        rtt_ms = report.rtt_ns / 1e6
        bound = bound_km(report.rtt_ns)
        problem = None
        if distance > bound + 1.0:
            problem = f"faster than light: {distance:.0f} km apart, yet {rtt_ms:.2f} ms bounds {bound:.0f} km"
        elif rtt_ms > settings.stretch * 2 * distance / settings.fibre_km_per_ms + settings.slack_ms:
            problem = f"too slow: {rtt_ms:.2f} ms for {distance:.0f} km"
        pairs.append(PairCheck(measurer.landmark_id, measured.landmark_id, distance, rtt_ms, bound, problem))
    flagged: dict[str, str] = {}
    names = sorted({p.measurer for p in pairs} | {p.measured for p in pairs})
    for name in names:
        mine = [p for p in pairs if name in (p.measurer, p.measured)]
        bad = [p for p in mine if p.problem]
        if len(mine) >= settings.min_pairs and len(bad) > settings.threshold * len(mine):
            flagged[name] = f"inconsistent with {len(bad)} of {len(mine)} peer measurements ({bad[0].problem})"
    return CrossCheck(pairs, flagged, refused)
