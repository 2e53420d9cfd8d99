"""Landmarks cross-checking each other (VerLoc style): a landmark lying about its place is flagged."""

from __future__ import annotations

from strongroom.geo.crosscheck import CrossCheckSettings, cross_check

from .helpers import World, report
from .netlab import PLACES, fibre_rtt_ms

NAMES = ["kansas-city", "omaha", "denver", "dallas", "st-louis", "tulsa"]


def peer_reports(world: World, true: dict[str, tuple[float, float]]) -> list[dict]:
    out = []
    for a in world.names:
        for b in world.names:
            if a != b:
                rtt = fibre_rtt_ms(true[a], true[b]) + 0.8
                out.append(report(a, world.signers[a], b, world.signers[b], [rtt + 0.1 * i for i in range(5)]))
    return out


def test_honest_landmarks_agree() -> None:
    world = World(list(NAMES))
    result = cross_check(peer_reports(world, dict(PLACES)), world.landmarks())
    assert result.flagged == {} and not result.refused
    assert len(result.pairs) == 30 and all(p.problem is None for p in result.pairs)


def test_a_landmark_lying_about_its_place_is_flagged() -> None:
    """'denver' claims Denver but sits in St Louis' neighbourhood (faster than light to its eastern peers);
    'dallas' claims Dallas but sits in Mexico City (too slow for its claimed distances)."""
    world = World(list(NAMES))
    true = dict(PLACES)
    true["denver"] = (38.9, -91.0)
    true["dallas"] = PLACES["mexico-city"]
    settings = CrossCheckSettings(stretch=1.5, slack_ms=2.0)
    result = cross_check(peer_reports(world, true), world.landmarks(), settings)
    assert set(result.flagged) == {"denver", "dallas"}
    assert "faster than light" in result.flagged["denver"] or "too slow" in result.flagged["denver"]
    assert "too slow" in result.flagged["dallas"]


def test_reports_not_about_a_landmark_are_refused() -> None:
    world = World(list(NAMES))
    stranger = World(["salina"])
    bad = report("omaha", world.signers["omaha"], "denver", stranger.host_key, [5.0] * 5)
    result = cross_check([bad], world.landmarks())
    assert result.pairs == [] and 0 in result.refused
