"""The pure verdict logic: vacuum-speed bounds, conservative disk polygons, the three verdicts, tolerance of a
lying landmark, and the property that added delay never produces IN for a place the host is not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from strongroom.geo.countries import load_countryinfo
from strongroom.geo.region import (
    C_VACUUM_KM_PER_MS,
    GEOD,
    Disk,
    Outcome,
    Parameters,
    _disk_polygon,
    _Frame,
    bound_km,
    locate,
)

from .helpers import US_LANDMARKS
from .netlab import PLACES, distance_km, fibre_rtt_ms

COUNTRIES = load_countryinfo()


def disks_from(true: tuple[float, float], names: list[str], overhead_ms: float, extra: dict[str, float] | None = None):
    extra = extra or {}
    return [
        Disk(n, *PLACES[n], bound_km(int((fibre_rtt_ms(true, PLACES[n]) + overhead_ms + extra.get(n, 0)) * 1e6)))
        for n in names
    ]


def test_the_bound_is_the_vacuum_speed_never_fibre() -> None:
    assert bound_km(1_000_000) == pytest.approx(149.896229)  # 1 ms of round trip: ~150 km, not ~100
    assert C_VACUUM_KM_PER_MS == 299.792458
    with pytest.raises(Exception, match="negative"):
        bound_km(-1)


@pytest.mark.parametrize(("lat", "lon", "radius"), [(37.7, -97.3, 80.0), (51.3, 9.5, 900.0), (-33.9, 151.2, 4900.0)])
def test_disk_polygons_contain_their_geodesic_disk(lat: float, lon: float, radius: float) -> None:
    """Points on and inside the true geodesic circle (WGS 84) all fall inside the polygon used for it,
    in a frame centred elsewhere too: the region is never smaller than the truth."""
    rng = np.random.default_rng(7)
    for frame in (_Frame(lat, lon), _Frame(lat + radius / 250.0, lon - radius / 200.0)):
        polygon = _disk_polygon(Disk("x", lat, lon, radius), frame)
        azimuths = rng.uniform(0, 360, 2000)
        distances = np.concatenate([np.full(1000, radius * 1000.0), rng.uniform(0, radius * 1000.0, 1000)])
        lons, lats, _ = GEOD.fwd(np.full(2000, lon), np.full(2000, lat), azimuths, distances)
        xs, ys = frame.xy(lons, lats)
        assert bool(np.all(shapely.covers(polygon, shapely.points(np.column_stack([xs, ys])))))


def test_honest_host_in_kansas_is_in_the_us() -> None:
    verdict = locate(disks_from(PLACES["wichita"], US_LANDMARKS, 1.0), COUNTRIES, Parameters())
    assert verdict.outcome is Outcome.IN and verdict.country == "US"
    assert verdict.region is not None and verdict.region.covers(Point(PLACES["wichita"][1], PLACES["wichita"][0]))
    assert verdict.area_km2 is not None and verdict.area_km2 > 0


@pytest.mark.parametrize("far", ["mexico-city", "toronto"])
def test_far_hosts_are_not_in_the_us(far: str) -> None:
    verdict = locate(disks_from(PLACES[far], US_LANDMARKS, 1.0), COUNTRIES, Parameters())
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.region is not None and verdict.region.covers(Point(PLACES[far][1], PLACES[far][0]))


def test_disjoint_disks_are_inconsistent() -> None:
    disks = [Disk("denver", *PLACES["denver"], 100.0), Disk("st-louis", *PLACES["st-louis"], 100.0)]
    disks.append(Disk("dallas", *PLACES["dallas"], 2000.0))
    verdict = locate(disks, COUNTRIES, Parameters())
    assert verdict.outcome is Outcome.INCONSISTENT and verdict.country is None


def test_three_pairwise_meeting_disks_with_no_common_point_are_inconsistent() -> None:
    """Each pair of disks meets, all three do not: only the polygon intersection can see it."""
    a, b, c = (0.0, 0.0), (0.0, 2.0), (1.732, 1.0)  # an equilateral triangle, sides ~222 km
    side = distance_km(a, b)
    disks = [Disk(n, *p, side * 0.52) for n, p in zip("abc", (a, b, c), strict=True)]
    verdict = locate(disks, COUNTRIES, Parameters(faulty=0))
    assert verdict.outcome is Outcome.INCONSISTENT


def test_unbounded_and_too_few_are_inconclusive() -> None:
    big = [Disk(n, *PLACES[n], 6000.0) for n in US_LANDMARKS]
    assert locate(big, COUNTRIES, Parameters()).reason.endswith("unbounded")
    few = disks_from(PLACES["wichita"], US_LANDMARKS[:2], 1.0)
    assert locate(few, COUNTRIES, Parameters()).outcome is Outcome.INCONCLUSIVE


def test_antimeridian_and_pole_regions_are_never_in() -> None:
    fiji = [Disk(f"f{i}", -17.8, 179.9 - i * 0.2, 120.0) for i in range(4)]
    assert locate(fiji, COUNTRIES, Parameters(faulty=0)).outcome is Outcome.INCONCLUSIVE
    arctic = [Disk(f"a{i}", 89.0, i * 90.0, 400.0) for i in range(4)]
    verdict = locate(arctic, COUNTRIES, Parameters(faulty=0))
    assert verdict.outcome is Outcome.INCONCLUSIVE and "pole" in verdict.reason


def test_one_lying_landmark_cannot_place_a_host_alone() -> None:
    """A landmark that claims Wichita and reports a tiny RTT for a host in Mexico City: with faulty=0 it alone
    decides the region (IN(US), wrong); the default faulty=1 asks every leave-one-out region and refuses."""
    disks = disks_from(PLACES["mexico-city"], US_LANDMARKS, 1.0)
    disks.append(Disk("liar", *PLACES["wichita"], 60.0))
    assert locate(disks, COUNTRIES, Parameters(faulty=0)).label() == "IN(US)"
    assert locate(disks, COUNTRIES, Parameters()).outcome is Outcome.INCONCLUSIVE


def test_allowed_countries_restrict_the_answer() -> None:
    disks = disks_from(PLACES["wichita"], US_LANDMARKS, 1.0)
    assert locate(disks, COUNTRIES, Parameters(), allowed=["US", "CA"]).label() == "IN(US)"
    assert locate(disks, COUNTRIES, Parameters(), allowed=["CA"]).outcome is Outcome.INCONCLUSIVE


# --- the property: added delay never turns a verdict into IN -------------------------------------------------

_US_BOX = (25.0, 49.0, -124.0, -67.0)


@st.composite
def scenes(draw: st.DrawFn) -> tuple[tuple[float, float], list[Disk], list[float]]:
    true = (draw(st.floats(15.0, 55.0)), draw(st.floats(-125.0, -65.0)))
    count = draw(st.integers(3, 7))
    disks, extras = [], []
    for i in range(count):
        bearing = draw(st.floats(0, 360))
        reach = draw(st.floats(20.0, 1500.0))
        lon, lat, _ = GEOD.fwd(true[1], true[0], bearing, reach * 1000.0)
        # physically realisable: at least the vacuum time, usually more (slower paths, processing)
        stretch = draw(st.floats(1.0, 2.5))
        overhead = draw(st.floats(0.0, 2.0))
        rtt_ms = 2 * reach / C_VACUUM_KM_PER_MS * stretch + overhead
        disks.append(Disk(f"l{i}", float(lat), float(lon), bound_km(math.ceil(rtt_ms * 1e6))))
        extras.append(draw(st.sampled_from([0.0, 0.0, 0.5, 3.0, 20.0])))
    return true, disks, extras


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes(), faulty=st.sampled_from([0, 1]))
def test_added_delay_never_turns_a_verdict_into_in(scene: tuple, faulty: int) -> None:
    """For any realisable measurement of a host at ``true``: adding delay (what a prover can do) never makes
    a verdict IN that was not, and no verdict ever says IN for a country that does not contain the host."""
    true, disks, extras = scene
    params = Parameters(faulty=faulty, min_landmarks=3)
    before = locate(disks, COUNTRIES, params, allowed=["US", "MX", "CA"])
    delayed = [
        Disk(d.landmark, d.lat, d.lon, d.radius_km + bound_km(int(x * 1e6))) for d, x in zip(disks, extras, strict=True)
    ]
    after = locate(delayed, COUNTRIES, params, allowed=["US", "MX", "CA"])
    host = Point(true[1], true[0])
    for verdict in (before, after):
        assert verdict.outcome is not Outcome.INCONSISTENT  # realisable measurements always meet at the host
        if verdict.outcome is Outcome.IN:
            assert COUNTRIES.shape(verdict.country).covers(host), f"IN({verdict.country}) but the host is not there"
    if before.outcome is not Outcome.IN:
        assert after.outcome is not Outcome.IN
