"""Styles from the catalog's hints: a MapLibre style the official validator accepts, QML that QGIS 3.22 loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from assets.publish import publish_geopackage, stable_fid
from layers.catalog import load_catalog
from layers.settings import REPO_ROOT
from server.styles.maplibre import legend, maplibre_style, qgis_style
from server.styles.qml import qgis_color

CATALOG = load_catalog()
TILES = "http://127.0.0.1:5000/tiles/{z}/{x}/{y}.pbf"
STYLE_SPEC = "@maplibre/maplibre-gl-style-spec@26"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-qgis is built for it, not for the venv


@pytest.fixture(scope="session")
def gl_style_validate() -> str:
    """MapLibre's own validator (`gl-style-validate` of @maplibre/maplibre-gl-style-spec), from the repository's
    node_modules, or installed once from the npm registry into a cache folder; the tests skip without node."""
    candidates = [os.environ.get("GL_STYLE_VALIDATE"), REPO_ROOT / "node_modules/.bin/gl-style-validate"]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geoportal" / "style-spec"
    candidates.append(cache / "node_modules/.bin/gl-style-validate")
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed: cannot run MapLibre's style validator")
    cache.mkdir(parents=True, exist_ok=True)
    installed = subprocess.run(
        ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", STYLE_SPEC],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"could not install {STYLE_SPEC}: {installed.stderr[-500:]}")
    return str(candidates[-1])


def validate(validator: str, style: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "style.json"
    path.write_text(json.dumps(style, ensure_ascii=False), encoding="utf-8")
    return subprocess.run([validator, str(path)], capture_output=True, text=True, timeout=60)


def by_id(style: dict) -> dict[str, dict]:
    return {layer["id"]: layer for layer in style["layers"]}


def test_style_passes_maplibre_validator(gl_style_validate, tmp_path):
    for options in [
        {},
        {
            "glyphs_url": "http://127.0.0.1:5000/fonts/{fontstack}/{range}.pbf",
            "basemap_url": "http://127.0.0.1:8080/{z}/{x}/{y}.png",
            "bounds": CATALOG.city.extent,
        },
    ]:
        result = validate(gl_style_validate, maplibre_style(CATALOG.public(), tiles_url=TILES, **options), tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    tilejson = maplibre_style(CATALOG.public(), tilejson_url="http://127.0.0.1:5000/tiles.json")
    assert validate(gl_style_validate, tilejson, tmp_path).returncode == 0


def test_validator_is_not_a_rubber_stamp(gl_style_validate, tmp_path):
    style = maplibre_style(CATALOG.public(), tiles_url=TILES)
    style["layers"][1]["paint"]["fill-opacity"] = "very"
    result = validate(gl_style_validate, style, tmp_path)
    assert result.returncode != 0 and "fill-opacity" in result.stdout + result.stderr


def test_zones_are_fill_and_outline_with_the_hinted_opacity():
    layers = by_id(maplibre_style(CATALOG.public(), tiles_url=TILES))
    zone = CATALOG["election_districts"]
    assert layers["election_districts"]["type"] == "fill"
    assert layers["election_districts"]["paint"] == {"fill-color": zone.style.color, "fill-opacity": zone.style.opacity}
    assert layers["election_districts-outline"]["type"] == "line"
    assert layers["election_districts"]["source-layer"] == "election_districts"


def test_partial_closures_are_dashed_and_coloured_by_type():
    layers = by_id(maplibre_style(CATALOG.public(), tiles_url=TILES))
    solid, dashed = layers["road_closures"], layers["road_closures-dashed"]
    assert solid["paint"]["line-color"] == [
        "match",
        ["get", "closure_type"],
        ["full"],
        "#b91c1c",
        ["partial"],
        "#f59e0b",
        "#3b82f6",
    ]
    assert dashed["filter"] == ["match", ["get", "closure_type"], ["partial"], True, False]
    assert solid["filter"] == ["match", ["get", "closure_type"], ["partial"], False, True]
    assert "line-dasharray" in dashed["paint"]
    assert solid["paint"]["line-width"] == 4


def test_points_are_circles_coloured_by_field_and_planned_outages_hollow():
    layers = by_id(maplibre_style(CATALOG.public(), tiles_url=TILES))
    repairs, outages = layers["repairs"], layers["outages"]
    assert repairs["type"] == "circle" and repairs["paint"]["circle-color"][:2] == ["match", ["get", "network"]]
    assert "#dc2626" in repairs["paint"]["circle-color"]  # heat network
    assert outages["paint"]["circle-opacity"][0] == "case"  # planned (dashed) outages drawn as rings


def test_layer_order_metadata_and_min_zoom():
    spec = CATALOG["repairs"]
    late = spec.model_copy(update={"style": spec.style.model_copy(update={"min_zoom": 12})})
    style = maplibre_style([late, CATALOG["election_districts"], CATALOG["road_closures"]], tiles_url=TILES)
    assert [layer["id"] for layer in style["layers"]] == [
        "background",
        "election_districts",
        "election_districts-outline",
        "road_closures",
        "road_closures-dashed",
        "repairs",
    ]
    repairs = by_id(style)["repairs"]
    assert repairs["minzoom"] == 12
    assert repairs["metadata"]["geoportal:title"] == {"ru": spec.title.ru, "en": spec.title.en}
    assert repairs["metadata"]["geoportal:domain"] == "repairs"
    assert len(repairs["metadata"]["geoportal:legend"]) == len(spec.style.colors)


def test_labels_and_basemap_only_when_configured():
    bare = maplibre_style(CATALOG.public(), tiles_url=TILES)
    assert "glyphs" not in bare and not [layer for layer in bare["layers"] if layer["type"] == "symbol"]
    assert set(bare["sources"]) == {"geoportal"}
    full = maplibre_style(
        CATALOG.public(),
        tiles_url=TILES,
        glyphs_url="/fonts/{fontstack}/{range}.pbf",
        basemap_url="/basemap/{z}/{x}/{y}.png",
        basemap_attribution="© OSM",
    )
    labels = [layer for layer in full["layers"] if layer["type"] == "symbol"]
    assert {layer["source-layer"] for layer in labels} == {s.id for s in CATALOG.public() if s.style.label}
    assert full["sources"]["basemap"]["type"] == "raster" and full["layers"][1]["id"] == "basemap"
    with pytest.raises(ValueError):
        maplibre_style(CATALOG.public())


def test_legend_marks_dashed_values():
    entries = {entry["value"]: entry for entry in legend(CATALOG["road_closures"])}
    assert entries["partial"]["dashed"] and not entries["full"]["dashed"]
    assert legend(CATALOG["detours"]) == [{"color": "#16a34a", "dashed": False}]


@pytest.mark.parametrize("layer_id", sorted(CATALOG))
def test_qml_is_xml_with_one_category_per_colour(layer_id):
    spec = CATALOG[layer_id]
    root = ET.fromstring(qgis_style(spec).split("\n", 1)[1])
    assert root.tag == "qgis" and root.get("version", "").startswith("3.22")
    renderer = root.find("renderer-v2")
    expected_class = {"Point": "SimpleMarker", "LineString": "SimpleLine", "MultiPolygon": "SimpleFill"}
    classes = {layer.get("class") for layer in renderer.iter("layer")}
    assert classes == {expected_class[spec.geometry_type]}
    if spec.style.by and spec.style.colors:
        assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == spec.style.by
        categories = renderer.findall("categories/category")
        assert [c.get("value") for c in categories] == list(spec.style.colors)
        symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
        for category in categories:
            options = {o.get("name"): o.get("value") for o in symbols[category.get("symbol")].iter("Option")}
            color = options.get("color") or options.get("line_color")
            assert color.rsplit(",", 1)[0] == qgis_color(spec.style.colors[category.get("value")]).rsplit(",", 1)[0]
    else:
        assert renderer.get("type") == "singleSymbol"
    label = root.find("labeling/settings/text-style")
    assert (label.get("fieldName") if label is not None else None) == spec.style.label


QGIS_CHECK = r"""
import json, sys
from qgis.core import QgsApplication, QgsVectorLayer, QgsMapSettings, QgsMapRendererSequentialJob, QgsSymbolLayer
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
def check(jobs):
    report = {}
    for gpkg, qml, png in jobs:
        layer_id = gpkg.rsplit("/", 1)[1][:-5]
        layer = QgsVectorLayer(f"{gpkg}|layername={layer_id}", layer_id, "ogr")
        message, ok = layer.loadNamedStyle(qml)
        renderer = layer.renderer()
        categories = renderer.categories() if renderer.type() == "categorizedSymbol" else []
        colors = {}
        dash = None
        for category in categories:
            symbol = category.symbol()
            colors[category.value()] = symbol.color().name()
            dash = symbol.symbolLayer(0).dataDefinedProperties().property(QgsSymbolLayer.PropertyStrokeStyle)
            dash = dash.expressionString()
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setExtent(layer.extent().buffered(0.002))
        settings.setOutputSize(QSize(300, 300))
        settings.setBackgroundColor(QColor(255, 255, 255))
        job = QgsMapRendererSequentialJob(settings)
        job.start(); job.waitForFinished()
        image = job.renderedImage(); image.save(png)
        grid = [(x, y) for x in range(0, 300, 3) for y in range(0, 300, 3)]
        painted = sum(1 for x, y in grid if image.pixelColor(x, y).name() != "#ffffff")
        report[layer_id] = {"valid": layer.isValid(), "loaded": ok, "message": message, "renderer": renderer.type(),
                            "colors": colors, "dash": dash, "labels": layer.labelsEnabled(),
                            "label_field": layer.labeling().settings().fieldName if layer.labeling() else None,
                            "painted": painted}
    return report


app = QgsApplication([], False)
app.initQgis()
print(json.dumps(check(json.loads(sys.argv[1]))), flush=True)
app.exitQgis()
"""


def qgis_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.skipif(not qgis_available(), reason="Debian's python3-qgis (QGIS 3.22) is not installed")
def test_qgis_3_22_loads_and_draws_the_qml_on_published_geopackages(tmp_path):
    layers = {
        "road_closures": (
            [
                {"closure_id": "C-1", "road_name": "ул. Ленина", "closure_type": "partial"},
                {"closure_id": "C-2", "road_name": "ул. Карла Маркса", "closure_type": "full"},
            ],
            [
                shapely.LineString([(104.28, 52.29), (104.29, 52.295)]),
                shapely.LineString([(104.28, 52.30), (104.29, 52.30)]),
            ],
        ),
        "repairs": (
            [{"permit_id": "R-1", "network": "heat", "address": "ул. Ленина, 1"}],
            [shapely.Point(104.28, 52.29)],
        ),
        "election_districts": (
            [{"district_no": 1, "name": "Округ №1"}],
            [shapely.MultiPolygon([shapely.box(104.2, 52.2, 104.3, 52.3)])],
        ),
    }
    jobs = []
    for layer_id, (rows, geometries) in layers.items():
        spec = CATALOG[layer_id]
        data = {f.name: [row.get(f.name) for row in rows] for f in spec.fields}
        frame = gpd.GeoDataFrame(data, geometry=geometries, crs=4326)
        frame.insert(0, "fid", [stable_fid(layer_id, row[spec.id_field]) for row in rows])
        gpkg = publish_geopackage(frame, spec, tmp_path / f"{layer_id}.gpkg")
        qml = tmp_path / f"{layer_id}.qml"
        qml.write_text(qgis_style(spec), encoding="utf-8")
        jobs.append([str(gpkg), str(qml), str(tmp_path / f"{layer_id}.png")])
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", QGIS_CHECK, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    closures = report["road_closures"]
    assert closures["valid"] and closures["loaded"] and closures["renderer"] == "categorizedSymbol"
    assert closures["colors"] == CATALOG["road_closures"].style.colors
    assert "'partial'" in closures["dash"] and closures["labels"] and closures["label_field"] == "road_name"
    assert report["repairs"]["colors"]["heat"] == "#dc2626"
    assert report["election_districts"]["renderer"] == "singleSymbol"
    assert all(entry["painted"] > 0 for entry in report.values()), report  # QGIS drew something with it


def test_non_text_fields_are_matched_as_text():
    spec = CATALOG["election_districts"]
    coloured = spec.model_copy(
        update={"style": spec.style.model_copy(update={"by": "district_no", "colors": {"7": "#ff0000"}})}
    )
    fill = by_id(maplibre_style([coloured], tiles_url=TILES))["election_districts"]
    assert fill["paint"]["fill-color"] == [
        "match",
        ["to-string", ["get", "district_no"]],
        ["7"],
        "#ff0000",
        spec.style.color,
    ]
