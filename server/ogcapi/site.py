"""Everything served for one state of the published files: a pygeoapi API per access level, rebuilt on change."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygeoapi.api as core_api
import pygeoapi.api.coverages as coverages_api
import pygeoapi.api.itemtypes as itemtypes_api
import pygeoapi.api.processes as processes_api
import pygeoapi.api.tiles as tiles_api
from pygeoapi.api import API
from pygeoapi.plugin import load_plugin
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from layers.catalog import Catalog
from server.access import LEVELS, Level, exposed_fields, visible_layers
from server.ogcapi.config import render_configs
from server.ogcapi.downloads import copy_without
from server.ogcapi.openapi import openapi_document
from server.published.files import FileIdentity, Signature, identities
from server.published.store import GEOPACKAGE_PROVIDER, PublishedStore
from server.settings import ServerSettings

LOGGER = logging.getLogger(__name__)
VIEW = "geoportal.view"  # where the access dispatcher puts the caller's View in the request scope
# the Site a request was checked against (early answers, then the dispatcher): one check of the published files per
# request; each check is a stat per file on the event loop, and each stat hands the GIL to the request threads
SITE = "geoportal.site"
COMMON_CLASSES = tuple(core_api.CONFORMANCE_CLASSES)  # copied: pygeoapi's conformance() appends to the original
READ_ONLY_EXCLUDED = {"http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete"}
FEATURES_3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
# What server.features.provider.GeoPackageProvider does with our CQL2 parsers (server.features.filter_parse),
# each class exercised end to end in tests/test_server_queries.py. QGIS filters server-side only when filter,
# features-filter, cql2-text and basic-cql2 are all declared. A provider may declare its own list as FILTER_CONFORMANCE.
GEOPACKAGE_FILTERS = (
    FEATURES_3 + "filter",
    FEATURES_3 + "features-filter",
    CQL2 + "cql2-text",
    CQL2 + "cql2-json",
    CQL2 + "basic-cql2",
    CQL2 + "advanced-comparison-operators",
    CQL2 + "case-insensitive-comparison",
    CQL2 + "basic-spatial-functions",
    CQL2 + "spatial-functions",
)


@dataclass(frozen=True)
class View:
    """What one access level sees. `query_api` answers item queries: its configuration lacks the temporal
    extents, because pygeoapi answers a `datetime` outside them with 400 where OGC API wants an empty page."""

    level: Level
    api: API
    query_api: API
    conformance: tuple[str, ...]
    downloads: dict[str, Path]  # the file each layer's download serves at this level


def view_of(request: Request) -> View:
    return request.scope[VIEW]


@dataclass(frozen=True)
class Site:
    signature: Signature
    views: dict[Level, View]
    access: dict[str, Level]  # level required per served collection


def filter_classes(config: dict[str, Any]) -> tuple[str, ...]:
    """Part 3 classes every feature provider of `config` declares it really implements (none if one does not)."""
    declared: set[str] | None = None
    for resource in config["resources"].values():
        for provider in resource.get("providers", []):  # a process has none
            if provider["type"] == "feature":
                default = GEOPACKAGE_FILTERS if provider["name"] == GEOPACKAGE_PROVIDER else ()
                classes = set(getattr(load_plugin("provider", provider), "FILTER_CONFORMANCE", default))
                declared = classes if declared is None else declared & classes
    return tuple(sorted(declared or ()))


def conformance_classes(config: dict[str, Any], filters: tuple[str, ...]) -> tuple[str, ...]:
    types = {p["type"] for r in config["resources"].values() for p in r.get("providers", [])}
    classes = set(COMMON_CLASSES)
    if "feature" in types:
        classes |= set(itemtypes_api.CONFORMANCE_CLASSES_FEATURES) - READ_ONLY_EXCLUDED
        classes |= set(filters)
    # vector tiles of every collection are served by server/map_routes.py, not a pygeoapi provider
    classes |= set(tiles_api.CONFORMANCE_CLASSES)
    if "coverage" in types:
        classes |= set(coverages_api.CONFORMANCE_CLASSES)
    if any(r.get("type") == "process" for r in config["resources"].values()):
        # synchronous execution only: no callbacks (subscribers) are sent
        classes |= {c for c in processes_api.CONFORMANCE_CLASSES if not c.endswith("/callback")}
    return tuple(sorted(classes))


def _without_temporal_extents(config: dict[str, Any]) -> dict[str, Any]:
    resources = {
        layer_id: {**resource, "extents": {k: v for k, v in resource["extents"].items() if k != "temporal"}}
        if "extents" in resource
        else resource
        for layer_id, resource in config["resources"].items()
    }
    return {**config, "resources": resources}


def build_view(level: Level, config: dict[str, Any], downloads: dict[str, Path]) -> View:
    filters = filter_classes(config)
    api = API(config, openapi_document(config, filters=bool(filters)))
    query_api = copy.copy(api)
    query_api.config = _without_temporal_extents(api.config)
    conformance = conformance_classes(config, filters)
    return View(level=level, api=api, query_api=query_api, conformance=conformance, downloads=downloads)


def level_downloads(
    catalog: Catalog, store: PublishedStore, settings: ServerSettings, level: Level, published: Collection[str]
) -> dict[str, Path]:
    """The published file where the level sees every field, else a copy without the fields it does not see."""
    downloads = {}
    for spec in visible_layers(catalog, level):
        if spec.id in published:
            hidden = [f.name for f in spec.fields if f.name not in exposed_fields(spec, level)]
            source = store.download_source(spec.id)
            downloads[spec.id] = copy_without(source, spec.id, hidden, settings.cache_path)
    return downloads


def build_site(catalog: Catalog, store: PublishedStore, settings: ServerSettings) -> Site:
    signature = store.signature()  # before reading: a change during the build triggers another
    extents = store.extents()
    downloads = {level: level_downloads(catalog, store, settings, level, extents) for level in LEVELS}
    configs = render_configs(catalog, store, settings, extents, downloads)
    views = {level: build_view(level, configs[level], downloads[level]) for level in LEVELS}
    return Site(
        signature=signature,
        views=views,
        access={layer_id: catalog[layer_id].access for layer_id in extents},
    )


class LiveSite:
    """The current Site, rebuilt when a published file changes (checked with one stat per layer per request).
    Requests in flight keep the Site they started with; the rebuild runs once, off the event loop, and the
    requests that noticed the change wait for it, so the first request after a publication sees new data."""

    def __init__(self, build: Callable[[], Site], signature: Callable[[], Signature]):
        self._build = build
        self._signature = signature
        self._lock = asyncio.Lock()
        self._failed: Signature | None = None
        self.site = build()
        self._checked: Signature = self.site.signature  # what the last `current()` found on disk
        self._versions: tuple[Signature | None, dict[str, FileIdentity]] = (None, {})

    async def current(self) -> Site:
        signature = self._checked = self._signature()
        if signature == self.site.signature or signature == self._failed:
            return self.site
        async with self._lock:
            signature = self._checked = self._signature()
            if signature != self.site.signature and signature != self._failed:
                try:
                    self.site = await run_in_threadpool(self._build)
                    self._failed = None
                except Exception:
                    # A broken file must not take the server down: keep serving the last good state.
                    LOGGER.exception(
                        "rebuilding the OGC API for the published files failed; serving the previous state"
                    )
                    self._failed = signature
        return self.site

    def file_versions(self) -> dict[str, FileIdentity]:
        """The published files' identities (path -> identity) as the last `current()` found them. Asked right after a
        request's own `current()`, nothing awaited between, they are the files as they were when that request came
        in or later: what a stat of its own would say (a plain page judged instant takes its file's from here)."""
        checked, versions = self._versions
        if checked is not self._checked:  # the watched signature is the same object until a file changes
            versions = identities(self._checked)
            self._versions = (self._checked, versions)
        return versions
