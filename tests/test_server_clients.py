"""The clients GIS people use: GDAL's OAPIF driver (QGIS's sibling) and OWSLib read the real server."""

from __future__ import annotations

import pandas as pd
import pyogrio
import pytest
import shapely
from owslib.ogcapi.features import Features

from layers.catalog import load_catalog
from layers.rasters import RASTER_PRODUCTS
from tests.server_fixtures import STAFF_KEY, published_frame, server  # noqa: F401 - fixture

CATALOG = load_catalog()


def comparable(frame, spec) -> pd.DataFrame:
    """The public fields as plain values, rows ordered by the layer's id: GeoJSON and GeoPackage types differ."""
    columns = [f.name for f in spec.public_fields]
    table = frame[columns].copy()
    for field in spec.public_fields:
        values = table[field.name]
        if field.type == "datetime":
            table[field.name] = pd.to_datetime(values, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S")
        elif field.type == "date":
            table[field.name] = pd.to_datetime(values).dt.strftime("%Y-%m-%d")
        elif field.type == "boolean":
            table[field.name] = values.map(lambda v: None if pd.isna(v) else bool(v))
        table[field.name] = table[field.name].astype(object).where(table[field.name].notna(), None)
    table["wkb"] = [shapely.set_precision(g, 1e-9).wkb_hex for g in frame.geometry]
    return table.sort_values(spec.id_field).reset_index(drop=True)


@pytest.mark.parametrize("spec", CATALOG.public(), ids=lambda spec: spec.id)
def test_gdal_oapif_reads_each_public_layer_as_published(server, spec):  # noqa: F811
    remote = pyogrio.read_dataframe(f"OAPIF:{server.url}", layer=spec.id)
    local = published_frame(server.paths, spec.id)
    internal = {f.name for f in spec.fields if f.internal}
    assert not internal & set(remote.columns)
    pd.testing.assert_frame_equal(comparable(remote, spec), comparable(local, spec), check_dtype=False)


def test_gdal_sends_attribute_filters_to_the_server(server):  # noqa: F811
    local = published_frame(server.paths, "repairs")
    where = "network IN ('heat', 'water') AND start_time >= '2026-11-01T00:00:00Z'"
    remote = pyogrio.read_dataframe(f"OAPIF:{server.url}", layer="repairs", where=where)
    chosen = local["network"].isin(["heat", "water"]) & (local["start_time"] >= pd.Timestamp("2026-11-01T00:00Z"))
    assert len(remote) and sorted(remote["permit_id"]) == sorted(local.loc[chosen, "permit_id"])
    # filtered by the server (GDAL evaluates what it could not translate itself), not after downloading all
    assert "filter=start_time" in server.log_text()


def test_gdal_lists_only_public_layers_without_a_key(server):  # noqa: F811
    listed = {name for name, _ in pyogrio.list_layers(f"OAPIF:{server.url}")}
    assert listed - set(RASTER_PRODUCTS) == {spec.id for spec in CATALOG.public()}


@pytest.fixture
def gdal_with_staff_key():
    # The OAPIF driver sets its own headers (GDAL_HTTP_HEADERS is not used), but it sends a bearer token.
    pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": STAFF_KEY})
    yield
    pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": None, "GDAL_HTTP_BEARER": None})


def test_gdal_with_a_key_sees_internal_layers_and_fields(server, gdal_with_staff_key):  # noqa: F811
    assert "addresses" in {name for name, _ in pyogrio.list_layers(f"OAPIF:{server.url}")}
    repairs = pyogrio.read_dataframe(f"OAPIF:{server.url}", layer="repairs")
    assert {"contractor_phone", "notes"} <= set(repairs.columns)


def test_owslib_lists_collections_and_queries_items(server):  # noqa: F811
    client = Features(server.url)
    listed = {c["id"] for c in client.collections()["collections"]}
    assert listed == {spec.id for spec in CATALOG.public()} | set(RASTER_PRODUCTS)
    local = published_frame(server.paths, "repairs")
    page = client.collection_items("repairs", limit=5)
    assert page["numberReturned"] == 5 and page["numberMatched"] == len(local)
    box = [104.25, 52.25, 104.30, 52.30]
    found = client.collection_items("repairs", bbox=box, limit=1000)
    expected = set(local.index[local.intersects(shapely.box(*box))])
    assert {f["id"] for f in found["features"]} == expected
    assert client.collection_queryables("repairs")["properties"].keys() >= {"permit_id", "network"}
    staff = Features(server.url, headers={"X-API-Key": STAFF_KEY})
    assert "addresses" in {c["id"] for c in staff.collections()["collections"]}
