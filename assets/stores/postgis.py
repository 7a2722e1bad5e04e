"""Publish a layer to PostGIS atomically: a staging table loaded and indexed, swapped in with the registry row in one
transaction, the previous version kept beside it for rollback (docs/contracts.md, "PostGIS store")."""

from __future__ import annotations

import json
from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import psycopg
import pyarrow as pa
import shapely
from psycopg import sql

from assets.arrow_stream import GEOMETRY, arrow_schema, record_batches
from assets.publish import PublicationError
from layers.catalog import LayerSpec
from layers.store import where

SCHEMA = "geoportal"
REGISTRY = "publications"
VERSIONS = "publication_version"
PREVIOUS_SUFFIX = "__previous"
COLUMN_TYPES = {
    "string": "text",
    "integer": "bigint",
    "number": "double precision",
    "boolean": "boolean",
    "date": "date",
    "datetime": "timestamptz",
}
# Any constant: one session at a time creates the schema (two first publications would race on CREATE ... IF NOT
# EXISTS, which is not safe under concurrency in PostgreSQL).
SETUP_LOCK = 0x67656F70  # "geop"
SETUP = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.{VERSIONS}",
    # slot 'current' is what is served, 'previous' what a rollback brings back; `version` comes from one sequence,
    # so (layer, version) pairs are the store's signature and never repeat.
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.{REGISTRY} (
        layer_id text NOT NULL,
        slot text NOT NULL CHECK (slot IN ('current', 'previous')),
        version bigint NOT NULL,
        published_at timestamptz NOT NULL DEFAULT now(),
        features bigint NOT NULL,
        identifier text,
        description text,
        by_source jsonb NOT NULL DEFAULT '{{}}',
        min_x double precision, min_y double precision, max_x double precision, max_y double precision,
        -- deferrable: a rollback swaps the two slots in one UPDATE
        PRIMARY KEY (layer_id, slot) DEFERRABLE INITIALLY IMMEDIATE)""",
]


class StorePublicationError(PublicationError):
    """PostGIS refused a publication: one line naming the layer, the database (never the password) and the error.
    A PublicationError, so the pipeline fails that layer alone with this line, as for a file system refusal."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.path = None
        self.error = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def table_name(layer_id: str, suffix: str = "") -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(layer_id + suffix))


def ensure_schema(connection: psycopg.Connection) -> None:
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
        for statement in SETUP:
            connection.execute(statement)


def _create_table(spec: LayerSpec, version: int) -> sql.Composed:
    columns = [sql.SQL("fid bigint NOT NULL")]
    columns += [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(COLUMN_TYPES[f.type])) for f in spec.fields]
    columns.append(sql.SQL("geom geometry({}, 4326)").format(sql.SQL(spec.geometry_type)))
    return sql.SQL("CREATE TABLE {} ({})").format(table_name(spec.id, f"__v{version}"), sql.SQL(", ").join(columns))


def _indexes(spec: LayerSpec, version: int) -> Iterator[sql.Composed]:
    """The GeoPackage's indexes: the primary key, the spatial one (GiST here, R-tree there) and B-trees on the id
    and the time window. Named by the version, which is unique across layers, so renamed tables never collide."""
    staging = table_name(spec.id, f"__v{version}")
    yield sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (fid)").format(
        staging, sql.Identifier(f"geoportal_v{version}_pkey")
    )
    yield sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(
        sql.Identifier(f"geoportal_v{version}_geom"), staging
    )
    fields = [spec.id_field, *([spec.temporal.start, spec.temporal.end] if spec.temporal else [])]
    for number, name in enumerate(dict.fromkeys(f for f in fields if f)):
        yield sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(f"geoportal_v{version}_{number}"), staging, sql.Identifier(name)
        )


def _rows(frame: gpd.GeoDataFrame, spec: LayerSpec) -> Iterator[tuple]:
    """The rows exactly as the GeoPackage gets them (the catalog-typed Arrow batches), geometry as hex EWKB."""
    schema = arrow_schema(spec)
    for batch in record_batches(frame, spec, schema, spatial_order(frame)):
        geometries = shapely.from_wkb(batch.column(GEOMETRY).to_numpy(zero_copy_only=False))
        geometries = shapely.set_srid(geometries, 4326)
        ewkb = shapely.to_wkb(geometries, hex=True, include_srid=True)
        columns = [batch.column(name).to_pylist() for name in schema.names if name != GEOMETRY]
        yield from zip(*columns, ewkb, strict=True)


def spatial_order(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Row positions along a Z-order curve of their bounding-box centres, so that neighbours share table pages: a small
    bbox then reads a few pages instead of one per feature (1M points: 35 ms -> 6 ms per query, measured as CLUSTER
    on the GiST). The fid, not the row order, is the feature's identity and the paging order; every reader orders
    by it (pages, tiles' ST_AsMVT ... ORDER BY fid, the store's local copy)."""
    if len(frame) < 2:
        return np.arange(len(frame))
    bounds = shapely.bounds(np.asarray(frame.geometry.values))
    centres = np.column_stack([(bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2])
    centres = np.nan_to_num(centres, nan=0.0)
    low, high = centres.min(axis=0), centres.max(axis=0)
    cells = ((centres - low) / np.where(high > low, high - low, 1.0) * 65535).astype(np.uint64)

    def spread(value: np.ndarray) -> np.ndarray:  # 16 bits -> every other one of 32
        value = (value | (value << np.uint64(8))) & np.uint64(0x00FF00FF)
        value = (value | (value << np.uint64(4))) & np.uint64(0x0F0F0F0F)
        value = (value | (value << np.uint64(2))) & np.uint64(0x33333333)
        return (value | (value << np.uint64(1))) & np.uint64(0x55555555)

    code = spread(cells[:, 0]) | (spread(cells[:, 1]) << np.uint64(1))
    return np.argsort(code, kind="stable")


def _copy(connection: psycopg.Connection, frame: gpd.GeoDataFrame, spec: LayerSpec, version: int) -> None:
    names = sql.SQL(", ").join(sql.Identifier(n) for n in ["fid", *(f.name for f in spec.fields), "geom"])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table_name(spec.id, f"__v{version}"), names)
    with connection.cursor().copy(statement) as copy:
        for row in _rows(frame, spec):
            copy.write_row(row)


def _swap_registry(connection: psycopg.Connection, spec: LayerSpec, version: int, by_source: dict) -> None:
    registry = sql.SQL(f"{SCHEMA}.{REGISTRY}")
    connection.execute(sql.SQL("DELETE FROM {} WHERE layer_id = %s AND slot = 'previous'").format(registry), (spec.id,))
    connection.execute(
        sql.SQL("UPDATE {} SET slot = 'previous' WHERE layer_id = %s AND slot = 'current'").format(registry), (spec.id,)
    )
    connection.execute(
        sql.SQL(
            "INSERT INTO {} (layer_id, slot, version, features, identifier, description, by_source,"
            " min_x, min_y, max_x, max_y)"
            " SELECT %s, 'current', %s, n, %s, %s, %s, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
            " FROM (SELECT ST_Extent(geom) AS e, count(*) AS n FROM {}) AS extent"
        ).format(registry, table_name(spec.id)),
        (
            spec.id,
            version,
            spec.title.ru,
            f"{spec.description.ru}\n\n{spec.description.en}",
            json.dumps(by_source, ensure_ascii=False),
        ),
    )


def publish_postgis(frame: gpd.GeoDataFrame, spec: LayerSpec, url: str, by_source: dict[str, int] | None = None) -> int:
    """Load `frame` (layer fields + EPSG:4326 geometry + `fid`, as for the GeoPackage) into a staging table, index
    it, and in the same transaction make it the served table, the served one `<layer>__previous` (the one before is
    dropped) and the registry row current. Readers see the old table or the new one, never a mix. Returns the
    version; raises StorePublicationError with one line when the database refuses."""
    try:
        with psycopg.connect(url) as connection:
            ensure_schema(connection)
            with connection.transaction():
                # one publication of a layer at a time, across machines; other layers go on
                connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{SCHEMA}.{spec.id}",))
                (version,) = connection.execute(f"SELECT nextval('{SCHEMA}.{VERSIONS}')").fetchone()
                connection.execute(_create_table(spec, version))
                _copy(connection, frame, spec, version)
                for statement in _indexes(spec, version):
                    connection.execute(statement)
                connection.execute(sql.SQL("ANALYZE {}").format(table_name(spec.id, f"__v{version}")))
                connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table_name(spec.id, PREVIOUS_SUFFIX)))
                connection.execute(
                    sql.SQL("ALTER TABLE IF EXISTS {} RENAME TO {}").format(
                        table_name(spec.id), sql.Identifier(spec.id + PREVIOUS_SUFFIX)
                    )
                )
                connection.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        table_name(spec.id, f"__v{version}"), sql.Identifier(spec.id)
                    )
                )
                _swap_registry(connection, spec, version, by_source or {})
        return version
    except (psycopg.Error, pa.ArrowException) as error:
        raise StorePublicationError(
            f"cannot publish {spec.id} to PostGIS {where(url)}: {_first_line(error)}; the previous version stays served"
        ) from None


def rollback_postgis(layer_id: str, url: str) -> int:
    """Serve the previous version of a layer again (the current one becomes the previous: a second rollback undoes
    the first). A new version number, so servers notice. Raises StorePublicationError without a previous version."""
    registry = sql.SQL(f"{SCHEMA}.{REGISTRY}")
    try:
        with psycopg.connect(url) as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{SCHEMA}.{layer_id}",))
            slots = dict(
                connection.execute(
                    sql.SQL("SELECT slot, version FROM {} WHERE layer_id = %s").format(registry), (layer_id,)
                ).fetchall()
            )
            if "previous" not in slots:
                raise StorePublicationError(f"cannot roll back {layer_id} in PostGIS {where(url)}: no previous version")
            swap = sql.Identifier(layer_id + "__swap")
            connection.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(table_name(layer_id), swap))
            connection.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    table_name(layer_id, PREVIOUS_SUFFIX), sql.Identifier(layer_id)
                )
            )
            connection.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    table_name(layer_id, "__swap"), sql.Identifier(layer_id + PREVIOUS_SUFFIX)
                )
            )
            (version,) = connection.execute(f"SELECT nextval('{SCHEMA}.{VERSIONS}')").fetchone()
            connection.execute("SET CONSTRAINTS ALL DEFERRED")
            connection.execute(
                sql.SQL(
                    "UPDATE {} SET slot = CASE slot WHEN 'current' THEN 'previous' ELSE 'current' END,"
                    " version = CASE slot WHEN 'previous' THEN %s ELSE version END WHERE layer_id = %s"
                ).format(registry),
                (version, layer_id),
            )
        return version
    except psycopg.Error as error:
        raise StorePublicationError(
            f"cannot roll back {layer_id} in PostGIS {where(url)}: {_first_line(error)}"
        ) from None
