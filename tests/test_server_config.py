"""The pygeoapi configuration and OpenAPI document rendered from the catalog: valid, and nothing internal public."""

from __future__ import annotations

import json
import sqlite3

import pytest
from pygeoapi.config import validate_config
from pygeoapi.openapi import validate_openapi_document

from layers.catalog import load_catalog
from layers.rasters import RASTER_PRODUCTS
from server.ogcapi.config import offered_crs, render_configs
from server.ogcapi.openapi import openapi_document
from server.published.store import GeoPackageStore
from server.settings import ServerSettings

CATALOG = load_catalog()
SETTINGS = ServerSettings(_env_file=None, host="127.0.0.1", port=5123)


@pytest.fixture(scope="module")
def configs(published_city):
    return render_configs(CATALOG, GeoPackageStore(CATALOG, published_city), SETTINGS)


def test_both_configurations_pass_pygeoapis_validator(configs):
    assert validate_config(configs["public"]) and validate_config(configs["internal"])


def test_one_collection_per_layer_named_by_layer_id(configs):
    public_layers = {spec.id for spec in CATALOG.public()}
    rasters = set(RASTER_PRODUCTS)  # the raster product is a coverage collection beside the layers

    def collections(level):  # beside them, the one process: /affects (server/affects/process.py)
        return {k for k, resource in configs[level]["resources"].items() if resource["type"] == "collection"}

    assert collections("public") == public_layers | rasters
    assert collections("internal") == set(CATALOG) | rasters
    assert set(configs["public"]["resources"]) - collections("public") == {"affects"}
    assert "addresses" not in configs["public"]["resources"]


def test_internal_fields_only_in_the_staff_configuration(configs):
    def exposed(level, layer_id):
        return configs[level]["resources"][layer_id]["providers"][0]["properties"]

    assert "contractor_phone" not in exposed("public", "repairs") and "notes" not in exposed("public", "repairs")
    assert "officer_phone" not in exposed("public", "police_precincts")
    assert {"contractor_phone", "notes"} <= set(exposed("internal", "repairs"))
    assert "officer_phone" in exposed("internal", "police_precincts")
    assert "contractor_phone" not in json.dumps(configs["public"], default=str)


def test_titles_and_descriptions_in_russian_and_english(configs):
    repairs = configs["public"]["resources"]["repairs"]
    assert repairs["title"] == {"ru": CATALOG["repairs"].title.ru, "en": CATALOG["repairs"].title.en}
    assert set(repairs["description"]) == {"ru", "en"}
    assert configs["public"]["server"]["languages"] == ["ru", "en"]


def test_extents_come_from_the_data(configs, published_city):
    extents = configs["public"]["resources"]["repairs"]["extents"]
    with sqlite3.connect(published_city.published_path("repairs")) as db:
        bbox = db.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name='repairs'").fetchone()
        first, open_ended = db.execute("SELECT MIN(start_time), COUNT(*) - COUNT(end_time) FROM repairs").fetchone()
    assert extents["spatial"]["bbox"] == pytest.approx(list(bbox))
    assert extents["temporal"]["begin"].strftime("%Y-%m-%dT%H:%M:%S") == first[:19]
    assert (extents["temporal"]["end"] is None) == (open_ended > 0)
    assert "temporal" not in configs["public"]["resources"]["election_districts"]["extents"]


def test_download_link_and_crs_list(configs):
    repairs = configs["public"]["resources"]["repairs"]
    link = repairs["links"][0]
    assert link["href"] == "http://127.0.0.1:5123/downloads/repairs.gpkg" and link["length"] > 0
    crs = repairs["providers"][0]["crs"]
    assert crs == offered_crs(CATALOG)
    assert crs[0] == "http://www.opengis.net/def/crs/OGC/1.3/CRS84" == repairs["providers"][0]["storage_crs"]
    assert "http://www.opengis.net/def/crs/EPSG/0/4326" in crs and "http://www.opengis.net/def/crs/EPSG/0/3857" in crs
    assert any("msk38-3" in uri for uri in crs)


def test_limits_let_qgis_page_by_a_thousand(configs):
    limits = configs["public"]["server"]["limits"]
    assert limits["max_items"] >= 10000 and 1 <= limits["default_items"] <= limits["max_items"]


@pytest.fixture(scope="module")
def documents(configs):
    from server.app import install_city_crs

    install_city_crs({k: d.proj4 for k, d in CATALOG.city.crs.items()})
    return {level: openapi_document(config, filters=True) for level, config in configs.items()}


def test_openapi_documents_are_valid(documents):
    assert validate_openapi_document(documents["public"]) and validate_openapi_document(documents["internal"])


def test_openapi_declares_limit_with_default_and_maximum(documents):
    limit = documents["public"]["components"]["parameters"]["limit"]["schema"]
    assert limit["default"] >= 1 and limit["maximum"] >= 1000
    items = documents["public"]["paths"]["/collections/repairs/items"]["get"]["parameters"]
    assert {"$ref": "#/components/parameters/limit"} in items


def test_public_openapi_knows_nothing_internal(documents):
    public = json.dumps(documents["public"])
    assert "/collections/addresses" not in public and '"addresses"]' not in public  # no path, no tag
    assert "contractor_phone" not in public and "officer_phone" not in public
    staff = json.dumps(documents["internal"])
    assert "/collections/addresses/items" in staff and "contractor_phone" in staff


def test_domains_are_declared_once():
    """layers/domains.py is the one list: the catalog's `domain:` values and the pipeline's cadences follow it."""
    from typing import get_args

    from layers.catalog import Domain
    from layers.domains import DOMAINS
    from pipelines.jobs import DOMAIN_CRON

    assert set(get_args(Domain)) <= set(DOMAINS)  # a domain missing here was a KeyError in the server
    assert {spec.domain for spec in CATALOG.values()} <= set(DOMAINS)
    assert {domain: v["cron"] for domain, v in DOMAINS.items() if v["cron"]} == DOMAIN_CRON
