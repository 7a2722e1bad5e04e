"""Publication to PostGIS (GEOPORTAL_STORE_URL): every layer of the sample city lands in PostGIS with the same ids,
fields, values, geometries and indexes as its GeoPackage; the swap is atomic and the previous version stays for
rollback; a store that refuses fails the layer with one line and changes neither copy."""

from __future__ import annotations

import datetime as dt
import sqlite3

import dagster as dg
import geopandas as gpd
import psycopg
import pytest
import shapely

from assets.stores.postgis import SCHEMA, StorePublicationError, publish_postgis, rollback_postgis
from layers.catalog import load_catalog
from server.published.gpkg import to_shapely
from tests import pg
from tests.conftest import city_paths, resource_for

postgres_cluster, postgres_url, published_city_postgis = pg.postgres_cluster, pg.postgres_url, pg.published_city_postgis

CATALOG = load_catalog()


def _stored(value: object, kind: str) -> object:
    """A PostGIS value in the form docs/contracts.md gives the GeoPackage's."""
    if value is None:
        return None
    if kind == "datetime":
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if kind == "date":
        return value.isoformat()
    if kind == "boolean":
        return int(value)
    return value


def gpkg_rows(path, spec) -> dict[int, tuple]:
    names = ", ".join(f'"{f.name}"' for f in spec.fields)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(f'SELECT fid, {names}, geom FROM "{spec.id}"').fetchall()
    return {row[0]: (*row[1:-1], to_shapely(row[-1])) for row in rows}


def postgis_rows(url: str, spec) -> dict[int, tuple]:
    names = ", ".join(f'"{f.name}"' for f in spec.fields)
    with psycopg.connect(url) as connection:
        rows = connection.execute(f'SELECT fid, {names}, ST_AsBinary(geom) FROM {SCHEMA}."{spec.id}"').fetchall()
    kinds = [f.type for f in spec.fields]
    return {
        row[0]: (
            *(_stored(v, k) for v, k in zip(row[1:-1], kinds, strict=True)),
            None if row[-1] is None else shapely.from_wkb(bytes(row[-1])),
        )
        for row in rows
    }


@pytest.mark.parametrize("layer_id", sorted(CATALOG))
def test_every_layer_is_in_postgis_as_in_its_geopackage(published_city_postgis, layer_id: str) -> None:
    paths, url = published_city_postgis
    spec = CATALOG[layer_id]
    in_file, in_postgis = gpkg_rows(paths.published_path(layer_id), spec), postgis_rows(url, spec)

    assert in_file, f"{layer_id}: the sample publishes features"
    assert sorted(in_postgis) == sorted(in_file)  # the same stable fids
    for fid, row in in_file.items():
        *values, geometry = row
        *pg_values, pg_geometry = in_postgis[fid]
        assert pg_values == [float(v) if isinstance(v, float) else v for v in values], (layer_id, fid)
        assert shapely.equals_exact(pg_geometry, geometry, tolerance=0), (layer_id, fid)


def test_indexes_and_registry_match_the_geopackage(published_city_postgis) -> None:
    paths, url = published_city_postgis
    spec = CATALOG["road_closures"]
    with psycopg.connect(url) as connection:
        indexes = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (SCHEMA, spec.id)
        ).fetchall()
        geometry = connection.execute(
            "SELECT type, srid FROM geometry_columns WHERE f_table_schema = %s AND f_table_name = %s", (SCHEMA, spec.id)
        ).fetchone()
        registry = connection.execute(
            f"SELECT features, identifier, by_source, min_x, min_y, max_x, max_y FROM {SCHEMA}.publications"
            " WHERE layer_id = %s AND slot = 'current'",
            (spec.id,),
        ).fetchone()
    definitions = " ".join(d for (d,) in indexes)
    assert "USING gist (geom)" in definitions
    assert "PRIMARY KEY" in definitions or "UNIQUE INDEX" in definitions and "(fid)" in definitions
    for field in (spec.id_field, spec.temporal.start, spec.temporal.end):
        assert f"USING btree ({field})" in definitions, (field, definitions)
    assert geometry == (spec.geometry_type.upper(), 4326)
    with sqlite3.connect(paths.published_path(spec.id)) as db:
        (count,) = db.execute(f'SELECT count(*) FROM "{spec.id}"').fetchone()
        bounds = db.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (spec.id,))
        bounds = bounds.fetchone()
    features, identifier, by_source, *bbox = registry
    assert features == count and identifier == spec.title.ru
    assert sum(by_source.values()) == count
    assert bbox == pytest.approx(bounds, abs=1e-9)


def small_frame(spec, ids: list[str]) -> gpd.GeoDataFrame:
    """A layer frame as the pipeline hands it to publication (fid + fields + EPSG:4326 geometry)."""
    from assets.publish import stable_fid

    frame = gpd.GeoDataFrame(
        {
            "fid": [stable_fid(spec.id, i) for i in ids],
            **{f.name: [None] * len(ids) for f in spec.fields},
        },
        geometry=[shapely.Point(104.28 + n / 100, 52.28) for n in range(len(ids))],
        crs="EPSG:4326",
    )
    frame[spec.id_field] = ids
    return frame


def served(url: str, layer_id: str) -> list[str]:
    spec = CATALOG[layer_id]
    with psycopg.connect(url) as connection:
        rows = connection.execute(f'SELECT "{spec.id_field}" FROM {SCHEMA}."{layer_id}" ORDER BY 1').fetchall()
    return [value for (value,) in rows]


def test_a_publication_keeps_the_previous_version_and_rollback_brings_it_back(postgres_url: str) -> None:
    spec = CATALOG["addresses"]
    first = publish_postgis(small_frame(spec, ["a1", "a2"]), spec, postgres_url)
    second = publish_postgis(small_frame(spec, ["b1"]), spec, postgres_url)
    assert second > first
    assert served(postgres_url, "addresses") == ["b1"]

    third = rollback_postgis("addresses", postgres_url)

    assert third > second  # a new version: servers see the change
    assert served(postgres_url, "addresses") == ["a1", "a2"]
    with psycopg.connect(postgres_url) as connection:
        slots = dict(
            connection.execute(
                f"SELECT slot, features FROM {SCHEMA}.publications WHERE layer_id = 'addresses'"
            ).fetchall()
        )
    assert slots == {"current": 2, "previous": 1}
    rollback_postgis("addresses", postgres_url)  # and back again
    assert served(postgres_url, "addresses") == ["b1"]


def test_rollback_without_a_previous_version_is_one_line(postgres_url: str) -> None:
    spec = CATALOG["addresses"]
    publish_postgis(small_frame(spec, ["a1"]), spec, postgres_url)
    with pytest.raises(StorePublicationError, match=r"^cannot roll back addresses in PostGIS .*: no previous version$"):
        rollback_postgis("addresses", postgres_url)


def test_readers_see_the_old_table_or_the_new_one_never_a_part(postgres_url: str) -> None:
    """Counted from another connection all through a publication of 50,000 features: 3 (the old table) until the
    swap commits, then 50,000; never a half-loaded staging table."""
    import threading

    spec = CATALOG["addresses"]
    publish_postgis(small_frame(spec, ["old1", "old2", "old3"]), spec, postgres_url)
    big = small_frame(spec, [f"new{n}" for n in range(50_000)])
    publication = threading.Thread(target=publish_postgis, args=(big, spec, postgres_url))
    seen = []
    with psycopg.connect(postgres_url, autocommit=True) as reader:
        publication.start()
        while publication.is_alive():
            seen.append(reader.execute(f"SELECT count(*) FROM {SCHEMA}.addresses").fetchone()[0])
        publication.join()
        seen.append(reader.execute(f"SELECT count(*) FROM {SCHEMA}.addresses").fetchone()[0])
    assert set(seen) <= {3, 50_000} and seen[0] == 3 and seen[-1] == 50_000, sorted(set(seen))


def test_a_store_that_refuses_fails_the_layer_with_one_line_and_changes_no_copy(
    tmp_path, postgres_cluster, monkeypatch
) -> None:
    from pipelines.factory import layer_assets

    closed = pg._free_port()
    monkeypatch.setenv("GEOPORTAL_STORE_URL", f"postgresql://nobody:secret@127.0.0.1:{closed}/geoportal")
    paths = city_paths(tmp_path)
    [asset] = [a for a in layer_assets(CATALOG) if a.key == dg.AssetKey("addresses")]

    result = dg.materialize([asset], resources={"geoportal": resource_for(paths)}, raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert f"cannot publish addresses to PostGIS 127.0.0.1:{closed}/geoportal" in message
    assert "secret" not in message
    assert not paths.published_path("addresses").exists()
