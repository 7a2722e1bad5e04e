"""pygeoapi's per-request costs that do not change its answers, taken out (measured by benchmarks/bench_server.py).

- `to_json` of the item handlers: orjson instead of json (13x faster on a page of 1,000 features); the same JSON
  values, with pygeoapi's own `json_serial` for what orjson does not know and json as the fallback;
- `transform_bbox` between two equal CRS URIs (every bbox without bbox-crs): the bbox itself, without building a
  PROJ transformer per request;
- `create_crs_transform_spec`: remembered per (storage CRS, offered CRSs, requested CRS) instead of two
  pyproj.CRS objects per request;
- `load_plugin` of the item handlers: our feature providers are made once per provider definition (a View's
  configuration is never changed once built, and a publication brings new definitions), not per request; they keep
  nothing of a request and serve several threads at once (server/features/provider.py);
- the query parameters pygeoapi reads (~25 `get`s a request) are a plain dict of what Starlette's QueryParams holds
  (the last value of a repeated name, as its `get` gives): a miss of Mapping.get costs a raised KeyError each.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import orjson
import pygeoapi.api.itemtypes as itemtypes_api
from pygeoapi.api import APIRequest
from pygeoapi.util import json_serial

from server.published.layer import LruCache

_ORIGINAL = {
    "to_json": itemtypes_api.to_json,
    "transform_bbox": itemtypes_api.transform_bbox,
    "create_crs_transform_spec": itemtypes_api.create_crs_transform_spec,
    "load_plugin": itemtypes_api.load_plugin,
    "_get_params": APIRequest._get_params,
}
# the providers that may be shared: server.published.store and postgis_store name them so in the configuration
SHARED_PROVIDERS = frozenset(
    {"server.features.provider.GeoPackageProvider", "server.features.postgis_provider.PostGISProvider"}
)
_providers = LruCache(256)  # a provider definition's provider
# datetimes through pygeoapi's json_serial (isoformat), as json.dumps(default=json_serial) writes them
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def to_json(dict_: dict, pretty: bool = False) -> str:
    return to_json_bytes(dict_, pretty).decode("utf-8")


def to_json_bytes(dict_: dict, pretty: bool = False) -> bytes:
    """`to_json(...)` UTF-8 encoded, for a caller that sends bytes: orjson's own bytes, not decoded only to be encoded
    again (a small bbox's page, 6.6 KB with Cyrillic text: 3.7 against 10.2 µs)."""
    if pretty:
        return _ORIGINAL["to_json"](dict_, pretty).encode("utf-8")
    try:
        return orjson.dumps(dict_, default=json_serial, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits: json writes it
        return json.dumps(dict_, default=json_serial, separators=(",", ":")).encode("utf-8")


def transform_bbox(bbox: list, from_crs: str, to_crs: str) -> list:
    if from_crs == to_crs:
        return list(bbox)
    return _ORIGINAL["transform_bbox"](bbox, from_crs, to_crs)


@lru_cache(maxsize=256)
def _crs_transform_spec(storage_crs: str | None, offered: tuple[str, ...] | None, query_crs_uri: str | None):
    config: dict[str, Any] = {}
    if storage_crs is not None:
        config["storage_crs"] = storage_crs
    if offered is not None:
        config["crs"] = list(offered)
    return _ORIGINAL["create_crs_transform_spec"](config, query_crs_uri)


def create_crs_transform_spec(config: dict, query_crs_uri: str | None = None):
    """Only `storage_crs` and `crs` of the provider decide the answer (pygeoapi 0.21); an error is not cached."""
    offered = config.get("crs")
    key_offered = tuple(offered) if isinstance(offered, list) else None
    if offered is not None and key_offered is None:
        return _ORIGINAL["create_crs_transform_spec"](config, query_crs_uri)
    return _crs_transform_spec(config.get("storage_crs"), key_offered, query_crs_uri)


def load_plugin(plugin_type: str, plugin_def: dict) -> Any:
    if plugin_type != "provider" or plugin_def.get("name") not in SHARED_PROVIDERS:
        return _ORIGINAL["load_plugin"](plugin_type, plugin_def)
    # a refused definition raises each time (nothing kept)
    return _providers.owned(plugin_def, None, lambda: _ORIGINAL["load_plugin"](plugin_type, plugin_def))


def _get_params(request: Any) -> Any:
    found = _ORIGINAL["_get_params"](request)
    return dict(found.items()) if hasattr(request, "query_params") else found


def install() -> None:
    """Idempotent; the city's CRS resolver (server.features.crs.install_city_crs) clears the CRS cache."""
    itemtypes_api.to_json = to_json
    itemtypes_api.transform_bbox = transform_bbox
    itemtypes_api.create_crs_transform_spec = create_crs_transform_spec
    itemtypes_api.load_plugin = load_plugin
    APIRequest._get_params = staticmethod(_get_params)
    _crs_transform_spec.cache_clear()  # a new app may come with another city's CRS definitions
    _providers.clear()
