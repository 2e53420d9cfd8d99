"""Country outlines: shipped in the countryinfo wheel (MIT), read without any network."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import metadata
from pathlib import Path

import pytest
from shapely.geometry import Point

from strongroom.geo.countries import load_countryinfo, load_geojson
from strongroom.geo.errors import GeoDataError

SRC = str(Path(__file__).parents[2] / "src")


def test_countryinfo_is_mit_and_has_outlines() -> None:
    assert metadata("countryinfo")["License"] == "MIT"
    data = load_countryinfo()
    assert len(data.shapes) >= 170 and data.digest.startswith("sha256:")
    assert data.shape("US").covers(Point(-97.33, 37.69))  # Wichita
    assert data.shape("DE").covers(Point(9.48, 51.31))  # Kassel
    assert not data.shape("US").covers(Point(-99.13, 19.43))  # Mexico City
    with pytest.raises(GeoDataError, match="no boundary for HU"):
        data.shape("HU")
    with pytest.raises(GeoDataError, match="alpha-2"):
        data.shape("usa")


def test_outlines_load_with_no_network_at_all() -> None:
    """In a fresh network namespace (nothing but a down loopback) the outlines load and a verdict is made."""
    code = (
        "from strongroom.geo.countries import load_countryinfo\n"
        "from strongroom.geo.region import Disk, Parameters, locate\n"
        "d = load_countryinfo()\n"
        "disks = [Disk('a', 37.7, -97.3, 300.0), Disk('b', 38.8, -97.6, 300.0), Disk('c', 36.2, -96.0, 300.0)]\n"
        "print(d.digest, locate(disks, d, Parameters()).label())\n"
    )
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "PROJ_NETWORK": "ON"},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == [load_countryinfo().digest, "IN(US)"]


def test_geojson_outlines_have_their_own_digest(tmp_path: Path) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    path = tmp_path / "c.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"ISO_A2": "XA"}, "geometry": square}],
            }
        )
    )
    data = load_geojson(path)
    assert data.codes() == ["XA"] and data.digest != load_countryinfo().digest
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(GeoDataError):
        load_geojson(path)
