"""Shapefiles and GeoJSON as agencies deliver them: parts missing, truncated, empty, twisted, nested."""

from __future__ import annotations

import json
from pathlib import Path

import fiona
import shapely
from shapely.geometry import mapping

from tests.corpus import Case, named
from tests.corpus.layers import DISTRICTS_JOINED, ZONES_GEOJSON, ZONES_SHP

# Squares in central Irkutsk, in МСК-38 zone 3 and in lon/lat.
MSK_SQUARES = [shapely.box(3335000 + n * 600, 384000, 3335500 + n * 600, 384500) for n in range(6)]
LONLAT_SQUARES = [shapely.box(104.25 + n * 0.01, 52.27, 104.258 + n * 0.01, 52.278) for n in range(6)]
BOWTIE = shapely.Polygon([(3335000, 384900), (3335200, 385100), (3335200, 384900), (3335000, 385100)])
MSK38_WKT = (
    'PROJCS["MSK-38 zone 3",GEOGCS["Pulkovo 1942",DATUM["Pulkovo_1942",SPHEROID["Krassowsky 1940",6378245,298.3]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",103.03333333333],PARAMETER["scale_factor",1],'
    'PARAMETER["false_easting",3250000],PARAMETER["false_northing",-5411057.63],UNIT["metre",1]]'
)


def shapefile(
    rows: list[tuple[int | None, str, shapely.Geometry | None]],
    geometry: str = "Polygon",
    then=None,
    encoding: str = "cp1251",
):
    def write(folder: Path) -> None:
        schema = {"geometry": geometry, "properties": {"NO": "int", "NAME": "str:40"}}
        options = {"driver": "ESRI Shapefile", "schema": schema, "encoding": encoding, "crs_wkt": MSK38_WKT}
        with fiona.open(folder / "zones.shp", "w", **options) as sink:
            for number, name, shape in rows:
                sink.write(
                    {
                        "geometry": mapping(shape) if shape is not None else None,
                        "properties": {"NO": number, "NAME": name},
                    }
                )
        if then is not None:
            then(folder)

    return write


def squares(count: int = 3) -> list[tuple[int, str, shapely.Geometry]]:
    return [(n + 1, f"Зона {n + 1}", MSK_SQUARES[n]) for n in range(count)]


def remove(*suffixes: str):
    return lambda folder: [(folder / f"zones{s}").unlink() for s in suffixes]


def truncate(size: int):
    def cut(folder: Path) -> None:
        with open(folder / "zones.shp", "r+b") as handle:
            handle.truncate(size)

    return cut


def overwrite(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


def shp(id: str, write, records: int, **kwargs) -> Case:
    return Case(id, ZONES_SHP, write, records, layer="zones", names="zones.shp", **kwargs)


def feature(no, geometry, name="Зона", **extra) -> dict:
    return {"type": "Feature", "properties": {"no": no, "name": name, **extra}, "geometry": geometry}


def collection(features: list, **extra) -> bytes:
    return json.dumps({"type": "FeatureCollection", **extra, "features": features}, ensure_ascii=False).encode()


def squares_geojson(count: int = 3) -> list[dict]:
    return [feature(n + 1, mapping(LONLAT_SQUARES[n])) for n in range(count)]


def gj(id: str, data: bytes, records: int, **kwargs) -> Case:
    return Case(
        id, ZONES_GEOJSON, named("zones.geojson", data), records, layer="zones", names="zones.geojson", **kwargs
    )


def nested(depth: int) -> bytes:
    geometry = "[" * depth + "]" * depth
    head = '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"no": 1}, '
    return (head + '"geometry": {"type": "Polygon", "coordinates": ' + geometry + "}}]}").encode()


def deputies(lines: list[str]) -> bytes:
    return "\n".join(["Округ;ФИО", *lines]).encode()


def joined(id: str, table: bytes, records: int, orphans: int = 0, **kwargs) -> Case:
    def write(folder: Path) -> None:
        (folder / "districts.geojson").write_bytes(collection(squares_geojson(3)))
        (folder / "deputies.csv").write_bytes(table)

    return Case(id, DISTRICTS_JOINED, write, records, layer="districts", orphans=orphans, **kwargs)


SHAPEFILE_CASES = [
    shp("shp-good", shapefile(squares()), 3, expect="records", published=3),
    shp("shp-bowtie-repaired", shapefile([*squares(1), (2, "Бантик", BOWTIE)]), 2, expect="records", published=2),
    shp("shp-without-shx", shapefile(squares(), then=remove(".shx")), 3, expect="file", reason="shx"),
    shp("shp-without-dbf", shapefile(squares(), then=remove(".dbf")), 3, expect="file", reason="dbf"),
    shp("shp-without-prj-crs-in-catalog", shapefile(squares(), then=remove(".prj")), 3, expect="records", published=3),
    shp(
        "shp-truncated-mid-record",
        shapefile(squares(5), then=truncate(100 + 3 * 136 + 60)),
        5,
        expect="records",
        published=3,
    ),
    shp("shp-truncated-to-header", shapefile(squares(5), then=truncate(100)), 5),
    shp("shp-truncated-inside-header", shapefile(squares(5), then=truncate(40)), 5, expect="file"),
    shp("shp-zero-records", shapefile([]), 0, published=0),
    shp(
        "shp-garbage-shp", shapefile(squares(), then=overwrite("zones.shp", b"not a shapefile" * 20)), 3, expect="file"
    ),
    shp("shp-null-geometry", shapefile([*squares(2), (3, "Пусто", None)]), 3, expect="records", published=2),
    shp(
        "shp-zero-area-polygon",
        shapefile(
            [*squares(2), (3, "Линия", shapely.Polygon([(3335000, 384000), (3335100, 384000), (3335200, 384000)]))]
        ),
        3,
        expect="records",
        published=2,
    ),
    shp("shp-dbf-in-cp866", shapefile(squares(), encoding="cp866"), 3, expect="records"),
    shp(
        "shp-id-missing",
        shapefile([*squares(2), (None, "Без номера", MSK_SQUARES[2])]),
        3,
        expect="records",
        published=2,
    ),
    shp(
        "shp-lonlat-coordinates-msk-declared",
        shapefile([(1, "Зона", LONLAT_SQUARES[0]), *squares(2)[1:]]),
        2,
        expect="records",
        published=1,
    ),
    shp(
        "shp-overlapping-zones",
        shapefile([(1, "A", MSK_SQUARES[0]), (2, "B", MSK_SQUARES[0].buffer(50))]),
        2,
        expect="records",
        published=2,
    ),
    shp(
        "shp-multipolygon-with-holes",
        shapefile([(1, "Кольцо", MSK_SQUARES[0].difference(MSK_SQUARES[0].buffer(-100)))]),
        1,
        published=1,
    ),
]

GEOJSON_CASES = [
    gj("geojson-good", collection(squares_geojson()), 3, expect="records", published=3),
    gj("geojson-not-json", b'{"type": "FeatureCollection", "features": [', 0, expect="file"),
    gj("geojson-empty-file", b"", 0, expect="file"),
    gj("geojson-html-error-page", b"<html><body>502 Bad Gateway</body></html>", 0, expect="file"),
    gj("geojson-nested-100k-deep", nested(100_000), 1),
    gj("geojson-nested-2k-deep", nested(2_000), 1),
    gj("geojson-no-features-member", b'{"type": "FeatureCollection"}', 0),
    gj("geojson-features-empty", collection([]), 0, expect="records", published=0),  # valid and empty: the map clears
    gj("geojson-a-single-feature", json.dumps(squares_geojson(1)[0]).encode(), 1, published=1),
    gj("geojson-bare-geometry", json.dumps(mapping(LONLAT_SQUARES[0])).encode(), 1),
    gj(
        "geojson-crs-member-web-mercator",
        collection(
            [feature(1, mapping(shapely.box(11608000, 6858000, 11609000, 6859000)))],
            crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        ),
        1,
        published=1,
    ),
    gj("geojson-null-geometry", collection([*squares_geojson(2), feature(3, None)]), 3, expect="records", published=2),
    gj(
        "geojson-unknown-geometry-type",
        collection([*squares_geojson(2), feature(3, {"type": "Polygonn", "coordinates": []})]),
        3,
    ),
    gj(
        "geojson-coordinates-as-strings",
        collection([*squares_geojson(2), feature(3, {"type": "Point", "coordinates": ["104.28", "52.28"]})]),
        3,
    ),
    gj(
        "geojson-lat-lon-swapped",
        collection(
            [*squares_geojson(2), feature(3, mapping(shapely.ops.transform(lambda x, y: (y, x), LONLAT_SQUARES[3])))]
        ),
        3,
        expect="records",
        published=2,
    ),
    gj(
        "geojson-unclosed-ring",
        collection(
            [
                *squares_geojson(2),
                feature(3, {"type": "Polygon", "coordinates": [[[104.3, 52.27], [104.31, 52.27], [104.31, 52.28]]]}),
            ]
        ),
        3,
    ),
    gj(
        "geojson-geometrycollection",
        collection(
            [
                feature(
                    1,
                    {
                        "type": "GeometryCollection",
                        "geometries": [mapping(LONLAT_SQUARES[0]), mapping(LONLAT_SQUARES[1])],
                    },
                )
            ]
        ),
        1,
    ),
    gj(
        "geojson-properties-null",
        collection(
            [{"type": "Feature", "properties": None, "geometry": mapping(LONLAT_SQUARES[0])}, *squares_geojson(2)[1:]]
        ),
        2,
        published=1,
    ),
    gj(
        "geojson-mixed-property-types",
        collection(
            [
                feature("1", mapping(LONLAT_SQUARES[0])),
                feature(2.0, mapping(LONLAT_SQUARES[1])),
                feature("три", mapping(LONLAT_SQUARES[2])),
            ]
        ),
        3,
        published=2,
    ),
    gj(
        "geojson-duplicate-ids",
        collection([feature(1, mapping(LONLAT_SQUARES[0])), feature(1, mapping(LONLAT_SQUARES[1]))]),
        2,
        published=1,
    ),
    gj(
        "geojson-bowtie",
        collection(
            [
                feature(
                    1,
                    {
                        "type": "Polygon",
                        "coordinates": [
                            [[104.3, 52.27], [104.31, 52.28], [104.31, 52.27], [104.3, 52.28], [104.3, 52.27]]
                        ],
                    },
                )
            ]
        ),
        1,
        published=1,
    ),
    gj("geojson-utf8-bom", b"\xef\xbb\xbf" + collection(squares_geojson()), 3, published=3),
]

JOIN_CASES = [
    joined("join-good", deputies(["1;Иванов", "2;Петров", "3;Сидорова"]), 3, published=3),
    joined("join-orphan-rows", deputies(["1;Иванов", "7;Призрак", "8;Никто"]), 3, orphans=2, published=3),
    joined("join-duplicate-key", deputies(["1;Иванов", "1;Иванов-второй", "2;Петров"]), 3, orphans=1, published=3),
    joined("join-key-written-as-float", deputies(["1.0;Иванов", " 02 ;Петров", "3;Сидорова"]), 3, published=3),
    joined(
        "join-table-missing-column",
        "\n".join(["Номер;ФИО", "1;Иванов"]).encode(),
        3,
        expect="file",
        names="deputies.csv",
    ),
    joined("join-table-empty", b"", 3, expect="file", names="deputies.csv"),
]

CASES = SHAPEFILE_CASES + GEOJSON_CASES + JOIN_CASES
