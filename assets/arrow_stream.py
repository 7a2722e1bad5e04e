"""A layer's frame as a stream of Arrow record batches typed by the catalog, for GDAL to write in bulk."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely

from layers.catalog import LayerSpec

# Rows converted to Arrow at a time: the whole table is never copied at once (a million features
# as Arrow strings and WKB would be another few hundred MB on top of the frame).
BATCH_ROWS = 65_536
GEOMETRY = "geometry"
ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.string(),  # YYYY-MM-DD text, as docs/contracts.md promises
    "datetime": pa.timestamp("us", tz="UTC"),
}
# The file is written aside, fsynced and renamed (assets.publish): SQLite's own journal and syncs
# protect nothing there, and cost a third of the write.
FAST_SQLITE = {"OGR_SQLITE_SYNCHRONOUS": "OFF", "OGR_SQLITE_JOURNAL": "OFF", "OGR_SQLITE_CACHE": "64"}


def arrow_schema(spec: LayerSpec) -> pa.Schema:
    """From the catalog, not the values: an empty or all-null column keeps its type."""
    return pa.schema(
        [
            pa.field("fid", pa.int64(), nullable=False),
            *(pa.field(f.name, ARROW_TYPES[f.type]) for f in spec.fields),
            pa.field(GEOMETRY, pa.binary()),
        ]
    )


def _column(values: pd.Series, kind: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(kind) and not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values, utc=True)
    try:
        return pa.array(values, type=kind, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if not pa.types.is_string(kind):
            raise
        # a stray non-text value in a text field (a number from a workbook cell) is written as text
        return pa.array([None if v is None or v is pd.NA or v != v else str(v) for v in values], type=kind)


def record_batches(frame: gpd.GeoDataFrame, spec: LayerSpec, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches in fid order: SQLite appends to its rowid B-tree instead of splitting pages at random
    (the fids are hashes), which halves the write."""
    order = np.argsort(frame["fid"].to_numpy(), kind="stable")
    names = [f.name for f in spec.fields]
    for start in range(0, len(order), BATCH_ROWS):
        rows = frame.iloc[order[start : start + BATCH_ROWS]]
        arrays = [pa.array(rows["fid"].to_numpy(dtype=np.int64), pa.int64())]
        arrays += [_column(rows[name], schema.field(name).type) for name in names]
        arrays.append(pa.array(shapely.to_wkb(rows.geometry.to_numpy(), flavor="iso"), pa.binary()))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def arrow_stream(frame: gpd.GeoDataFrame, spec: LayerSpec) -> pa.RecordBatchReader:
    schema = arrow_schema(spec)
    return pa.RecordBatchReader.from_batches(schema, record_batches(frame, spec, schema))


@contextlib.contextmanager
def fast_sqlite() -> Iterator[None]:
    """GDAL's SQLite settings for one write, restored afterwards (they are process-wide)."""
    previous = {key: pyogrio.get_gdal_config_option(key) for key in FAST_SQLITE}
    pyogrio.set_gdal_config_options(FAST_SQLITE)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)
