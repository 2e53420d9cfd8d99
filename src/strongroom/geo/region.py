"""From round-trip times to a region and a verdict: the pure part of location verification.

Each landmark's smallest round-trip time (RTT) bounds the host's distance: a reply cannot travel faster
than light in vacuum, so ``d <= C_VACUUM * RTT / 2`` (``C_VACUUM`` = 299.792458 km/ms). No fibre factor is
ever applied: microwave and radio links run at nearly vacuum speed, so a bound computed for fibre (~200
km/ms) could be beaten by a prover that has such a link. Processing time is never subtracted: it only
makes the bound looser, never wrong. The host lies in every landmark's geodesic disk (WGS 84), so it lies
in their intersection, the region. Constraint-based geolocation (CBG, Gueye et al. 2006) is the same
idea with a calibrated, tighter speed; here the speed is the physical limit, so the region is sound.

Verdicts (``locate``):

- ``INCONSISTENT``: the disks have no common point. Physics allows no host position: a landmark is not
  where it says, or its clock or report is wrong. An alarm, never a location.
- ``IN(CC)``: the region, grown by ``margin_km`` (coarse borders, polygon approximations), lies inside
  country CC's outline, and still does with any ``faulty`` landmarks left out (so that many lying
  landmarks cannot place a host on their own).
- ``INCONCLUSIVE``: anything else: the region reaches outside every allowed country, too few landmarks
  answered, the region is unbounded (no disk smaller than ``max_radius_km``), or it crosses the
  antimeridian or a pole (not handled: never IN).

Geometry: the region is computed in an azimuthal equidistant projection centred on the landmark with
the smallest disk. Every point of the region lies within that disk, and a disk whose radius is at most
``max_radius_km`` (5,000 km) never reaches the antipode of the centre, so every disk that matters is a
simple polygon there. Disk boundaries are exact geodesic points (``pyproj.Geod.fwd``); the chords between
them are pushed outwards by the largest gap measured at the mid-azimuths, so each polygon contains its
disk and the region is never smaller than the true intersection. Disks larger than ``max_radius_km`` are
left out of the intersection (a larger region, never a smaller one) but still take part in the
pairwise consistency check, which is exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import shapely
from pyproj import Geod, Proj, Transformer
from shapely.geometry import Point, Polygon

from strongroom.geo.countries import CountryData
from strongroom.geo.errors import GeoError

C_VACUUM_KM_PER_MS = 299.792458  # the speed of light in vacuum: the only speed a bound may use
EARTH_RADIUS_KM = 6371.0088  # mean radius, only to bound the projection's scale factor
GEOD = Geod(ellps="WGS84")
MAX_SUBSETS = 2000  # bound on leave-f-out region computations
_CHORD_KM = 20.0  # target spacing of disk boundary points


def bound_km(rtt_ns: int) -> float:
    """The farthest a host can be from a landmark that measured ``rtt_ns``: c_vacuum * RTT / 2, in km."""
    if rtt_ns < 0:
        raise GeoError("a round-trip time cannot be negative")
    return rtt_ns / 1e6 * C_VACUUM_KM_PER_MS / 2


class Outcome(StrEnum):
    IN = "IN"
    INCONCLUSIVE = "INCONCLUSIVE"
    INCONSISTENT = "INCONSISTENT"


@dataclass(frozen=True)
class Parameters:
    """How verdicts are computed; carried (and committed) in every statement's record."""

    min_samples: int = 5  # per landmark: fewer valid samples and the landmark is left out
    min_landmarks: int = 3  # fewer usable landmarks: INCONCLUSIVE
    margin_km: float = 25.0  # the region, grown by this, must lie inside the country
    max_radius_km: float = 5000.0  # larger disks bound nothing useful and stay out of the intersection
    faulty: int = 1  # IN must hold with any this many landmarks left out

    def __post_init__(self) -> None:
        if not (1 <= self.min_samples <= 64 and 1 <= self.min_landmarks <= 256 and 0 <= self.faulty <= 8):
            raise GeoError("parameters out of range (min_samples 1-64, min_landmarks 1-256, faulty 0-8)")
        if not (0 <= self.margin_km <= 1000 and 1 <= self.max_radius_km <= 5000):
            raise GeoError("parameters out of range (margin_km 0-1000, max_radius_km 1-5000)")

    def to_json(self) -> dict[str, Any]:
        return {
            "min_samples": self.min_samples,
            "min_landmarks": self.min_landmarks,
            "margin_km": self.margin_km,
            "max_radius_km": self.max_radius_km,
            "faulty": self.faulty,
        }

    @classmethod
    def from_json(cls, value: Any) -> Parameters:
        if not isinstance(value, dict) or set(value) != set(cls().to_json()):
            raise GeoError("parameters must have exactly: " + ", ".join(sorted(cls().to_json())))
        ints = ("min_samples", "min_landmarks", "faulty")
        for name, item in value.items():
            kind = int if name in ints else (int, float)
            if isinstance(item, bool) or not isinstance(item, kind) or not math.isfinite(item):
                raise GeoError(f"parameter {name} must be a number")
        return cls(
            min_samples=int(value["min_samples"]),
            min_landmarks=int(value["min_landmarks"]),
            margin_km=float(value["margin_km"]),
            max_radius_km=float(value["max_radius_km"]),
            faulty=int(value["faulty"]),
        )


@dataclass(frozen=True)
class Disk:
    """A landmark's bound: the host is within ``radius_km`` (geodesic) of (lat, lon)."""

    landmark: str
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Verdict:
    """The outcome, the country (IN only) and what an auditor or a benchmark wants to see."""

    outcome: Outcome
    country: str | None
    reason: str
    landmarks: tuple[str, ...] = ()
    area_km2: float | None = None
    centre: tuple[float, float] | None = None  # (lat, lon) of the region's centroid
    region: Any = field(default=None, compare=False, repr=False)  # shapely Polygon, lon/lat

    def same_as(self, other: Verdict) -> bool:
        return self.outcome == other.outcome and self.country == other.country

    def label(self) -> str:
        return f"IN({self.country})" if self.outcome is Outcome.IN else self.outcome.value


class _Frame:
    """Azimuthal equidistant projection (metres) centred on one point; exact distances from the centre."""

    def __init__(self, lat: float, lon: float) -> None:
        self.lat, self.lon = lat, lon
        proj = Proj(proj="aeqd", lat_0=lat, lon_0=lon, ellps="WGS84", units="m")
        self.to_xy = Transformer.from_proj(Proj(proj="longlat", ellps="WGS84"), proj, always_xy=True)
        self.to_ll = Transformer.from_proj(proj, Proj(proj="longlat", ellps="WGS84"), always_xy=True)

    def xy(self, lons: Any, lats: Any) -> tuple[Any, Any]:
        return self.to_xy.transform(lons, lats)

    def ll(self, xs: Any, ys: Any) -> tuple[Any, Any]:
        return self.to_ll.transform(xs, ys)


def _disk_polygon(disk: Disk, frame: _Frame) -> Any:
    """A polygon in ``frame`` that contains the geodesic disk (see the module docstring)."""
    radius_m = disk.radius_km * 1000.0
    count = int(min(1024, max(64, math.ceil(2 * math.pi * disk.radius_km / _CHORD_KM))))
    azimuths = np.linspace(0.0, 360.0, 2 * count, endpoint=False)
    lons, lats, _ = GEOD.fwd(
        np.full(azimuths.size, disk.lon), np.full(azimuths.size, disk.lat), azimuths, np.full(azimuths.size, radius_m)
    )
    xs, ys = frame.xy(lons, lats)
    vertices = np.column_stack([xs[0::2], ys[0::2]])
    polygon = Polygon(vertices)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    # the mid-azimuth points are on the true boundary: the chords must not cut them off
    mids = shapely.points(np.column_stack([xs[1::2], ys[1::2]]))
    outside = shapely.distance(mids, polygon)
    gap = float(np.max(outside)) if outside.size else 0.0
    # the curve between a vertex and a mid-point can bulge further than the mid-point itself: double, plus 10 m
    return polygon.buffer(2.0 * gap + 10.0, quad_segs=2) if gap > 0 else polygon.buffer(10.0, quad_segs=2)


def _scale(distance_km: float) -> float:
    """The largest scale factor of the azimuthal equidistant projection within ``distance_km`` of its centre
    (radial 1, tangential (d/R)/sin(d/R)), with 1% for the ellipsoid."""
    angle = min(distance_km / EARTH_RADIUS_KM, math.pi * 0.95)
    return (angle / math.sin(angle) if angle > 1e-9 else 1.0) * 1.01


def pairwise_inconsistency(disks: Sequence[Disk]) -> tuple[str, str] | None:
    """Two landmarks whose disks are disjoint (geodesic distance > r1 + r2), or None."""
    if len(disks) < 2:
        return None
    pairs = list(itertools.combinations(range(len(disks)), 2))
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    lat = np.array([d.lat for d in disks])
    lon = np.array([d.lon for d in disks])
    radius = np.array([d.radius_km for d in disks])
    _, _, metres = GEOD.inv(lon[a], lat[a], lon[b], lat[b])
    gap = np.asarray(metres) / 1000.0 - (radius[a] + radius[b])
    worst = int(np.argmax(gap))
    if gap[worst] > 0:
        return disks[a[worst]].landmark, disks[b[worst]].landmark
    return None


def _intersection(disks: Sequence[Disk], polygons: dict[str, Any], inner: Disk) -> Any:
    """The intersection of ``disks`` (their polygons in one frame); ``inner`` is the smallest of them."""
    region = polygons[inner.landmark]
    for disk in disks:
        if disk is inner:
            continue
        if disk.radius_km >= _distance_km(inner, disk) + inner.radius_km * 1.01 + 1.0:
            continue  # contains the whole of the smallest disk: no constraint
        region = region.intersection(polygons[disk.landmark])
        if region.is_empty:
            break
    return region


def _to_lonlat(region: Any, frame: _Frame) -> Any | None:
    """``region`` (a polygon in ``frame``) in longitude/latitude, or None if it crosses the antimeridian."""
    polygons = list(region.geoms) if hasattr(region, "geoms") else [region]
    out = []
    for polygon in polygons:
        if not isinstance(polygon, Polygon) or polygon.is_empty:
            continue
        dense = shapely.segmentize(polygon.exterior, 10_000.0)
        xy = np.asarray(dense.coords)
        lons, lats = frame.ll(xy[:, 0], xy[:, 1])
        lons = np.asarray(lons)
        if lons.size > 1 and float(np.max(np.abs(np.diff(lons)))) > 180.0:
            return None
        out.append(Polygon(np.column_stack([lons, np.asarray(lats)])))
    if not out:
        return None
    merged = shapely.union_all(out)
    return merged if merged.is_valid else shapely.make_valid(merged)


def _area_km2(region_ll: Any) -> float:
    area, _ = GEOD.geometry_area_perimeter(region_ll)
    return abs(float(area)) / 1e6


def locate(
    disks: Sequence[Disk],
    countries: CountryData,
    params: Parameters,
    allowed: Collection[str] | None = None,
) -> Verdict:
    """The verdict for these disks (one per landmark, each its smallest RTT's bound); see the module doc."""
    names = tuple(sorted(d.landmark for d in disks))
    if len(set(names)) != len(names):
        raise GeoError("one disk per landmark")
    clash = pairwise_inconsistency(disks)
    if clash is not None:
        return Verdict(Outcome.INCONSISTENT, None, f"disks of {clash[0]} and {clash[1]} do not meet", names)
    if len(disks) < params.min_landmarks:
        return Verdict(Outcome.INCONCLUSIVE, None, f"{len(disks)} landmarks, fewer than {params.min_landmarks}", names)
    bounded = [d for d in disks if d.radius_km <= params.max_radius_km]
    if not bounded:
        return Verdict(Outcome.INCONCLUSIVE, None, f"no disk within {params.max_radius_km:g} km: unbounded", names)
    centre = min(bounded, key=lambda d: (d.radius_km, d.landmark))
    frame = _Frame(centre.lat, centre.lon)
    polygons = {d.landmark: _disk_polygon(d, frame) for d in bounded}
    region = _intersection(bounded, polygons, centre)
    if region.is_empty or region.area <= 0.0:
        return Verdict(Outcome.INCONSISTENT, None, "the disks have no common point", names)
    region_ll = _to_lonlat(region, frame)
    area = _area_km2(region_ll) if region_ll is not None else None
    middle = region.centroid
    clon, clat = frame.ll(middle.x, middle.y)
    country, why = _country(bounded, frame, centre, polygons, region, countries, params, allowed)
    outcome = Outcome.INCONCLUSIVE if country is None else Outcome.IN
    return Verdict(outcome, country, why, names, area, (float(clat), float(clon)), region_ll)


def _country(
    bounded: Sequence[Disk],
    frame: _Frame,
    centre: Disk,
    polygons: dict[str, Any],
    region: Any,
    countries: CountryData,
    params: Parameters,
    allowed: Collection[str] | None,
) -> tuple[str | None, str]:
    """The one allowed country containing the (grown) region under every leave-``faulty``-out subset."""
    if len(bounded) <= params.faulty:
        return None, f"{len(bounded)} bounded disks cannot tolerate {params.faulty} faulty landmarks"
    if params.faulty == 0:
        regions = [region]
    else:
        subsets = list(itertools.islice(itertools.combinations(bounded, len(bounded) - params.faulty), MAX_SUBSETS + 1))
        if len(subsets) > MAX_SUBSETS:
            return None, f"more than {MAX_SUBSETS} subsets to check: lower faulty"
        regions = []
        for subset in subsets:
            # each subset's region lies within its own smallest disk, computed in the same frame (every
            # bounded disk meets the centre's, so all lie well inside the projection's safe zone)
            inner = min(subset, key=lambda d: (d.radius_km, d.landmark))
            regions.append(_intersection(subset, polygons, inner))
    union = shapely.union_all(regions)
    reach = max(_distance_km(centre, d) + d.radius_km for d in bounded) if params.faulty else centre.radius_km
    grown = union.buffer(params.margin_km * 1000.0 * _scale(reach + params.margin_km), quad_segs=8)
    for pole_lat in (90.0, -90.0):
        px, py = frame.xy(0.0, pole_lat)
        if math.isfinite(px) and math.isfinite(py) and grown.intersects(Point(px, py)):
            return None, "the region reaches a pole"
    grown_ll = _to_lonlat(grown, frame)
    if grown_ll is None:
        return None, "the region crosses the antimeridian"
    minx, miny, maxx, maxy = grown_ll.bounds
    codes = countries.codes() if allowed is None else sorted(allowed)
    for code in codes:
        cminx, cminy, cmaxx, cmaxy = countries.bounds.get(code, (-180.0, -90.0, 180.0, 90.0))
        if minx < cminx or maxx > cmaxx or miny < cminy or maxy > cmaxy:
            continue
        if grown_ll.within(countries.shape(code)):
            return code, f"the region (+{params.margin_km:g} km) lies inside {code}"
    what = "any allowed country" if allowed is not None else "any one country"
    return None, f"the region (+{params.margin_km:g} km) is not inside {what}"


def _distance_km(a: Disk, b: Disk) -> float:
    _, _, metres = GEOD.inv(a.lon, a.lat, b.lon, b.lat)
    return float(metres) / 1000.0
