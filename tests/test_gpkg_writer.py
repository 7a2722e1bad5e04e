"""GDAL's GeoPackage write in a child process (assets.gpkg_writer): what the batches hold is written, a refusal
comes back as one line, and no writer outlives a failed or killed publication."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyogrio
import pytest
import shapely

from assets.gpkg_writer import WriterFailed, write_arrow_in_child

SCHEMA = pa.schema(
    [pa.field("fid", pa.int64(), nullable=False), pa.field("name", pa.string()), pa.field("geometry", pa.binary())]
)
OPTIONS = {
    "layer": "t",
    "driver": "GPKG",
    "geometry_name": "geometry",
    "geometry_type": "Point",
    "crs": "EPSG:4326",
    "layer_options": {"FID": "fid", "GEOMETRY_NAME": "geom", "SPATIAL_INDEX": "NO"},
}


def batch(start: int, count: int) -> pa.RecordBatch:
    points = [shapely.to_wkb(shapely.Point(104 + n * 1e-4, 52), flavor="iso") for n in range(start, start + count)]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(start + 1, start + count + 1), pa.int64()),
            pa.array([f"№{n} «ё»" for n in range(start, start + count)]),
            pa.array(points, pa.binary()),
        ],
        schema=SCHEMA,
    )


def writers_of(path: Path) -> list[int]:
    """Processes running the writer for `path` (a file, or any file in a folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"gpkg_writer.py") for part in command) and any(
                part.startswith(str(path).encode()) for part in command
            ):
                found.append(int(entry.name))
    return found


def test_the_child_writes_every_batch_in_order(tmp_path):
    path = tmp_path / "t.gpkg"
    write_arrow_in_child(SCHEMA, [batch(0, 1000), batch(1000, 5), batch(1005, 0), batch(1005, 3000)], path, OPTIONS)
    frame = pyogrio.read_dataframe(path, layer="t", fid_as_index=True)
    assert frame.index.tolist() == list(range(1, 4006))
    assert frame["name"].iloc[4004] == "№4004 «ё»" and frame.geometry.iloc[4004].x == pytest.approx(104 + 4004e-4)


def test_a_refused_write_comes_back_as_the_writers_one_line_reason(tmp_path):
    path = tmp_path / "no such folder" / "t.gpkg"
    with pytest.raises(WriterFailed) as failed:
        write_arrow_in_child(SCHEMA, [batch(0, 10)], path, OPTIONS)
    assert "\n" not in str(failed.value) and str(failed.value).strip()
    assert not writers_of(path)


def test_a_failing_batch_source_stops_the_writer_and_is_raised_as_it_is(tmp_path):
    path = tmp_path / "t.gpkg"

    def batches():
        yield batch(0, 100)
        raise ValueError("not a date: 31.02.2026")

    with pytest.raises(ValueError, match="31.02.2026"):
        write_arrow_in_child(SCHEMA, batches(), path, OPTIONS)
    assert not writers_of(path)
