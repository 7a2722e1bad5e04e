"""The bundled sample city, end to end: every domain from every sample format to a GeoPackage."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pyogrio
import pyproj
import pytest

from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from tests.conftest import SHARED_DATA

CATALOG = load_catalog()
SAMPLE = REPO_ROOT / "data" / "sample" / "irkutsk"
EXPECTED = json.loads((SAMPLE / "expected.json").read_text(encoding="utf-8"))


def layer(paths, layer_id: str):
    return pyogrio.read_dataframe(paths.published_path(layer_id))


def rejects(paths, layer_id: str) -> list[dict[str, str]]:
    with open(paths.rejects_path(layer_id), encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("layer_id", list(CATALOG))
def test_every_layer_is_published_with_its_schema(published_city, layer_id):
    frame = layer(published_city, layer_id)
    spec = CATALOG[layer_id]
    assert len(frame) > 0
    assert [c for c in frame.columns if c != "geometry"] == [f.name for f in spec.fields]
    assert set(frame.geom_type) == {spec.geometry_type}
    assert frame.crs.to_epsg() == 4326
    west, south, east, north = CATALOG.city.extent
    minx, miny, maxx, maxy = frame.total_bounds
    assert west <= minx and maxx <= east and south <= miny and maxy <= north


def test_msk_control_point_lands_within_a_centimetre(published_city):
    """The register row at the Irkutsk test vector (X northing, Y easting in МСК-38 zone 3)."""
    vectors = (
        json.loads((SHARED_DATA / "msk_test_vectors.json").read_text(encoding="utf-8"))["vectors"]
        if (SHARED_DATA / "msk_test_vectors.json").exists()
        else [{"city": "Иркутск", "wgs84_lon": 104.2806, "wgs84_lat": 52.287}]
    )
    irkutsk = next(v for v in vectors if v["city"] == "Иркутск")
    frame = layer(published_city, "addresses")
    point = frame.loc[frame.address_id == "A-CONTROL", "geometry"].iloc[0]
    _, _, metres = pyproj.Geod(ellps="WGS84").inv(point.x, point.y, irkutsk["wgs84_lon"], irkutsk["wgs84_lat"])
    assert metres < 0.01


def test_repairs_from_csv_and_xlsx_with_geocoded_rows(published_city):
    frame = layer(published_city, "repairs")
    assert set(frame.network) == {"heat", "water", "sewer", "power", "gas", "telecom"}
    assert (frame.work_kind == "emergency").sum() >= EXPECTED.get("emergency_works_rows", 1) * 0.8
    reasons = " | ".join(r["reason"] for r in rejects(published_city, "repairs"))
    assert "ends before it starts" in reasons
    assert "not one of the allowed values" in reasons
    assert "не найден в адресном реестре" in reasons
    assert "duplicate permit_id" in reasons


def test_closures_and_their_detours(published_city):
    closures = layer(published_city, "road_closures")
    detours = layer(published_city, "detours")
    assert set(closures.feed) == {"wzdx", "municipal"}
    assert set(closures.closure_type) == {"full", "partial"}
    assert set(detours.closure_id) <= set(closures.closure_id)
    assert closures.loc[closures.closure_id.isin(detours.closure_id), "has_detour"].all()
    assert detours.groupby("closure_id").sequence.apply(lambda s: sorted(s) == list(range(1, len(s) + 1))).all()


def test_outages_one_feature_per_building_and_unmatched_reported(published_city):
    frame = layer(published_city, "outages")
    assert frame.outage_id.is_unique
    assert frame.notice_id.nunique() > 1 and len(frame) > frame.notice_id.nunique()
    assert set(frame.resource) <= {"cold_water", "hot_water", "heating", "power", "gas"}
    unmatched = [r for r in rejects(published_city, "outages") if "адресном реестре" in r["reason"]]
    assert unmatched, "addresses missing from the register are reported, not dropped"


def test_zones_joined_to_their_people(published_city):
    districts = layer(published_city, "election_districts")
    assert districts.district_no.is_unique and districts.deputy_name.notna().all()
    orphan = [r for r in rejects(published_city, "election_districts") if r["source_file"] == "zones/deputies.csv"]
    assert orphan and "matches no district_no" in orphan[0]["reason"]
    precincts = layer(published_city, "police_precincts")
    assert precincts.officer_name.notna().all()


@pytest.mark.skipif(not shutil.which("ogrinfo"), reason="Debian's gdal-bin (GDAL 3.6, as in QGIS 3.22) not installed")
@pytest.mark.parametrize("layer_id", list(CATALOG))
def test_gdal_36_of_qgis_322_opens_the_geopackage_quietly(published_city, layer_id):
    result = subprocess.run(
        ["ogrinfo", "-so", "-al", str(published_city.published_path(layer_id))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        result.returncode == 0
        and "GDAL 3.6" in subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True, check=True).stdout
    )
    assert result.stderr.strip() == "", result.stderr
    assert f"Layer name: {layer_id}" in result.stdout and "Feature Count:" in result.stdout
