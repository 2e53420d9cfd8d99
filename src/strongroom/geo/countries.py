"""Country boundaries: ISO 3166-1 alpha-2 code -> (Multi)Polygon in longitude/latitude (WGS 84).

The default source is the ``countryinfo`` package (MIT licence), which ships a GeoJSON outline inside each
country's JSON file and reads nothing from the network. Its outlines come from johan/world.geo.json
(released under the Unlicense, itself a coarse, roughly 1:110m Natural Earth-style generalisation): about
170 countries have one; microstates, many islands and, in version 1.0.1, Hungary, Serbia, Montenegro,
Singapore and Myanmar have none, and for those no verdict can say IN. Outlines are coarse (metropolitan
France has 55 vertices), which is why a verdict keeps a margin between the region and the border
(``Parameters.margin_km``).

Operators who want finer borders load any GeoJSON FeatureCollection whose features carry an alpha-2 code
(``load_geojson``). Whatever is loaded is named by a digest (``CountryData.digest``) that every statement's
committed record carries, so an auditor recomputes with exactly the same borders or is told they differ.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from strongroom.canonical_json import canonical_json
from strongroom.geo.errors import GeoDataError

_ALPHA2 = re.compile(r"[A-Z]{2}")
MAX_GEOJSON_BYTES = 64 * 1024 * 1024


def check_code(code: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper case, or GeoDataError."""
    if not isinstance(code, str) or not _ALPHA2.fullmatch(code):
        raise GeoDataError(f"{str(code)[:20]!r} is not an ISO 3166-1 alpha-2 country code (like DE)")
    return code


@dataclass(frozen=True)
class CountryData:
    """Country outlines, with a digest naming exactly these outlines and a human label for the source."""

    source: str
    shapes: Mapping[str, Any]  # alpha-2 -> shapely Polygon | MultiPolygon, lon/lat
    digest: str
    bounds: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)

    def codes(self) -> list[str]:
        return sorted(self.shapes)

    def shape(self, code: str) -> Any:
        check_code(code)
        try:
            return self.shapes[code]
        except KeyError:
            raise GeoDataError(f"{self.source} has no boundary for {code}: no verdict can place a host there") from None

    def check_allowed(self, codes: Iterable[str]) -> list[str]:
        """The codes, checked to exist in this data; sorted, without repeats."""
        found = sorted({check_code(c) for c in codes})
        for code in found:
            self.shape(code)
        return found


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _geometry(value: Any, where: str) -> Any:
    try:
        geometry = shape(value)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise GeoDataError(f"{where}: not a GeoJSON geometry ({type(exc).__name__})") from None
    if not isinstance(geometry, Polygon | MultiPolygon) or geometry.is_empty:
        raise GeoDataError(f"{where}: boundary must be a non-empty Polygon or MultiPolygon")
    minx, miny, maxx, maxy = geometry.bounds
    if not all(_finite(v) for v in (minx, miny, maxx, maxy)) or minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise GeoDataError(f"{where}: coordinates outside longitude/latitude range")
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    return geometry


def _build(source: str, geometries: Mapping[str, Any]) -> CountryData:
    shapes: dict[str, Any] = {}
    for code, value in geometries.items():
        shapes[code] = _geometry(value, f"{source} {code}")
    # The digest names the outlines themselves (canonical GeoJSON per code), not the package that carried them.
    digest = hashlib.sha256(canonical_json({c: geometries[c] for c in sorted(geometries)})).hexdigest()
    bounds = {code: tuple(geom.bounds) for code, geom in shapes.items()}
    return CountryData(source, shapes, "sha256:" + digest, bounds)


@functools.cache
def load_countryinfo() -> CountryData:
    """Every outline the installed ``countryinfo`` ships (read from its package files, never the network)."""
    try:
        from importlib.metadata import version

        import countryinfo
    except ImportError:
        raise GeoDataError("the countryinfo package is not installed (pip install 'strongroom[geo]')") from None
    geometries: dict[str, Any] = {}
    for country in countryinfo.all_countries():
        iso = country.iso()
        code = iso.get("alpha2") if isinstance(iso, dict) else None
        outline = country.geo_json()
        if not isinstance(code, str) or not _ALPHA2.fullmatch(code) or not isinstance(outline, dict):
            continue
        features = outline.get("features")
        if not isinstance(features, list) or not features:
            continue
        geometry = features[0].get("geometry") if isinstance(features[0], dict) else None
        if isinstance(geometry, dict) and code not in geometries:
            geometries[code] = geometry
    if not geometries:
        raise GeoDataError("the countryinfo package carries no country outlines")
    return _build(f"countryinfo {version('countryinfo')}", geometries)


def load_geojson(path: Path) -> CountryData:
    """Outlines from a GeoJSON FeatureCollection; each feature's alpha-2 code is read from its properties
    (``ISO_A2``, ``iso_a2``, ``ISO3166-1-Alpha-2`` or ``alpha2``), else from its ``id`` if that is one."""
    data = Path(path).read_bytes()
    if len(data) > MAX_GEOJSON_BYTES:
        raise GeoDataError(f"{path}: larger than {MAX_GEOJSON_BYTES} bytes")
    try:
        value = json.loads(data)
    except ValueError:
        raise GeoDataError(f"{path}: not JSON") from None
    features = value.get("features") if isinstance(value, dict) else None
    if not isinstance(features, list):
        raise GeoDataError(f"{path}: not a GeoJSON FeatureCollection")
    geometries: dict[str, Any] = {}
    for feature in features:
        if not isinstance(feature, dict):
            continue
        props = feature.get("properties") or {}
        candidates = [props.get(k) for k in ("ISO_A2", "iso_a2", "ISO3166-1-Alpha-2", "alpha2")] + [feature.get("id")]
        code = next((c for c in candidates if isinstance(c, str) and _ALPHA2.fullmatch(c)), None)
        if code is None or not isinstance(feature.get("geometry"), dict):
            continue
        if code in geometries:
            raise GeoDataError(f"{path}: two features for {code}")
        geometries[code] = feature["geometry"]
    if not geometries:
        raise GeoDataError(f"{path}: no feature carries an alpha-2 code")
    return _build(f"GeoJSON {Path(path).name}", geometries)
