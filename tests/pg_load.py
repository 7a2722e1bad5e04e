"""A contract GeoPackage loaded into PostGIS the way assets/stores/postgis.py publishes a layer (schema `geoportal`,
the contract's column types, GiST and B-trees, a registry row), so a provider test can ask both stores the same
questions about the very same rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import shapely
from psycopg import sql

from assets.stores.postgis import COLUMN_TYPES, SCHEMA, ensure_schema
from server.published import gpkg
from server.published.layer import column_kind


def load_geopackage(path: Path, table: str, url: str, indexed: tuple[str, ...] = ()) -> int:
    """Publish `table` of the GeoPackage at `path` into the database at `url` as its current version; the version."""
    with sqlite3.connect(path) as source:
        info = source.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table,)).fetchall()
        geometry_column, geometry_type = source.execute(
            "SELECT column_name, geometry_type_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
        ).fetchone()
        fields = [(name, column_kind(declared)) for name, declared, pk in info if not pk and name != geometry_column]
        names = ", ".join(f'"{name}"' for name, _ in fields)
        rows = source.execute(f'SELECT fid, {names}, "{geometry_column}" FROM "{table}" ORDER BY fid').fetchall()
    columns = [sql.SQL("fid bigint PRIMARY KEY")]
    columns += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(COLUMN_TYPES[kind])) for name, kind in fields]
    columns.append(sql.SQL("geom geometry({}, 4326)").format(sql.SQL(geometry_type)))
    target = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(table))
    with psycopg.connect(url) as connection:
        ensure_schema(connection)
        with connection.transaction():
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            connection.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(columns)))
            copy_names = sql.SQL(", ").join(sql.Identifier(n) for n in ["fid", *(n for n, _ in fields), "geom"])
            with connection.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, copy_names)) as copy:
                for row in rows:
                    shape = gpkg.to_shapely(row[-1]) if row[-1] is not None else None
                    ewkb = (
                        None
                        if shape is None
                        else shapely.to_wkb(shapely.set_srid(shape, 4326), hex=True, include_srid=True)
                    )
                    copy.write_row([*row[:-1], ewkb])
            connection.execute(sql.SQL("CREATE INDEX ON {} USING gist (geom)").format(target))
            for name in indexed:
                connection.execute(sql.SQL("CREATE INDEX ON {} ({})").format(target, sql.Identifier(name)))
            connection.execute(sql.SQL("ANALYZE {}").format(target))
            (version,) = connection.execute(f"SELECT nextval('{SCHEMA}.publication_version')").fetchone()
            connection.execute(f"DELETE FROM {SCHEMA}.publications WHERE layer_id = %s", (table,))
            connection.execute(
                f"INSERT INTO {SCHEMA}.publications (layer_id, slot, version, features, min_x, min_y, max_x, max_y)"
                " SELECT %s, 'current', %s, n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
                f' FROM (SELECT ST_Extent(geom) AS e, count(*) AS n FROM {SCHEMA}."{table}") AS x',
                (table, version),
            )
    return version
