"""A plain item page (bbox, limit, offset; GeoJSON) answered without pygeoapi's items handler, as it answers.

A small bbox is what a map asks most, and each one is new, so no cache holds it. Its answer cost ~1.7-2.6 ms of a
worker's CPU, of which SQLite's count and page are ~40 %; most of the rest was pygeoapi's handler (a hundred
parameter checks, log lines and translations for the ~10 that such a request uses), Starlette's middleware and
router, and the hand-off to a request thread. Here the same provider answers the same query, and the page around its
features is put together with pygeoapi's own functions (limits, CRS headers, languages, to_json) in its handler's
order: links, `timeStamp`, headers; the query is split, its bbox read and the links' values quoted as Starlette,
pygeoapi's validate_bbox and urllib would (the tests compare them), without their general cases' cost.

Only what is provably handled alike is answered: a GET without a body, `Accept-Language` or an Accept other than
JSON's, of a layer the caller's View serves with a provider that allows it (the GeoPackage store's; not PostGIS's, see
server.features.postgis_provider), whose query names nothing but `bbox` (4 finite numbers, as server.ogcapi.params
checks them), `limit` and `offset` (plain whole numbers) and `f=json`, each at most once. Without a key such a page of
a public layer is answered before the middleware stack (server/early_answers.py); with one, by the items route once
the access dispatcher has chosen the key's View (server/ogcapi/plain_reads.py reads it for both). Anything else, and
any error (a provider's too), goes to pygeoapi's handler, which answers it as before (tests/test_plain_items.py
compares both over HTTP, keyed requests included).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pygeoapi.api.itemtypes as itemtypes_api
from pygeoapi import l10n
from pygeoapi.api import F_HTML, F_JSON, F_JSONLD, FORMAT_TYPES, HEADERS, SYSTEM_LOCALE, evaluate_limit
from pygeoapi.util import get_provider_by_type

from server.errors import BadRequest
from server.features.provider import InstantPage
from server.ogcapi import params
from server.ogcapi.speedups import SHARED_PROVIDERS, to_json_bytes
from server.published.layer import LruCache

NAMES = frozenset({"bbox", "limit", "offset", "f"})
# Accept values pygeoapi reads as "no format" or JSON (pygeoapi.api.APIRequest._get_format): the same page
ACCEPTS = frozenset({None, b"*/*", b"application/json", b"application/geo+json"})
# a body (pygeoapi reads a GET's body as a CQL2 filter) or a language choice: the items route answers
REFUSED = frozenset({b"content-length", b"transfer-encoding", b"accept-language"})
MAX_OFFSET = 10**9  # beyond any layer; a larger one goes down the stack
MAX_LIMITS_KEPT = 256  # `limit=` texts reckoned per layer (plain_limit); any other is reckoned each time


class NotPlain(Exception):
    """The page is not one this module answers as pygeoapi does: the stack answers it."""


@dataclass(frozen=True)
class PlainQuery:
    pairs: tuple[tuple[str, str], ...]  # as Starlette parses the query string, in its order
    bbox: list[float]  # empty: none
    limit: str | None
    offset: int


def plain_request(headers: list[tuple[bytes, bytes]], query_string: bytes) -> PlainQuery | None:
    """The query of a GET (its headers as the ASGI scope lists them) if the request is plain, else None. A key, the
    layer and the method are the caller's to check."""
    accept = None
    for name, value in headers:
        if name in REFUSED or (name == b"accept" and accept is not None):
            return None
        if name == b"accept":
            accept = value
    if accept not in ACCEPTS:
        return None
    return plain_query(query_string)


def plain_query(query_string: bytes) -> PlainQuery | None:
    """The query if it is plain, else None. Parsed as Starlette's QueryParams parse it."""
    pairs = query_pairs(query_string.decode("latin-1"))
    given = dict(pairs)
    if len(given) != len(pairs) or not given.keys() <= NAMES or given.get("f", F_JSON) != F_JSON:
        return None
    box: list[float] = []
    if "bbox" in given:
        try:
            numbers = params.bbox(given["bbox"])  # what server.ogcapi.routes checks before pygeoapi
        except BadRequest:
            return None
        if len(numbers) != 4:
            return None
        # what pygeoapi's validate_bbox makes of 4 numbers (float() of each, no other change) that passed the
        # stricter check above; a test holds the two equal
        box = list(numbers)
    limit = given.get("limit")
    if limit is not None and not (limit.isascii() and limit.isdigit() and len(limit) <= 9):
        return None
    offset_text = given.get("offset", "0")
    if not (offset_text.isascii() and offset_text.isdigit() and len(offset_text) <= 10):
        return None
    offset = int(offset_text)
    if offset > MAX_OFFSET:
        return None
    return PlainQuery(pairs, box, limit, offset)


def query_pairs(query: str) -> tuple[tuple[str, str], ...]:
    """urllib.parse.parse_qsl(query, keep_blank_values=True): a query without `%` or `+` (nothing to decode, as a
    map's bboxes are) split here directly, in a third of parse_qsl's time; any other by parse_qsl itself."""
    if "%" in query or "+" in query:
        return tuple(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return tuple((name, value) for name, _, value in (part.partition("=") for part in query.split("&") if part))


# what urllib.parse.quote leaves as it is (its always-safe characters), with `,` where that is safe too
UNQUOTED = {"": re.compile(r"[A-Za-z0-9_.~-]*"), ",": re.compile(r"[A-Za-z0-9_.~,-]*")}


def query_quoted(text: str, safe: str) -> str:
    """urllib.parse.quote(text, safe=safe): a name or number with nothing to quote (a map's query) as it is."""
    return text if UNQUOTED[safe].fullmatch(text) else urllib.parse.quote(text, safe=safe)


@dataclass(frozen=True)
class PlainLayer:
    """What every plain page of one layer in one View shares, made once with pygeoapi's own functions."""

    api: Any
    provider: Any
    limits: tuple[dict, dict]  # the server's and the collection's
    storage_crs: str
    crs_transform_spec: Any
    language: Any  # the provider's locale (pygeoapi.l10n.get_plugin_locale)
    headers: dict[str, str]  # as the stack's Response holds them (lower-case names), geo+json
    uri: str
    titles: tuple[str, str, str, str, str]  # GeoJSON, JSON-LD, HTML, prev, next
    collection_link: dict[str, str]
    # `limit=` text -> the limit pygeoapi reckons from `limits` (plain_limit); a map asks a handful of them
    limit_of: dict[str | None, int] = field(default_factory=dict, compare=False, repr=False)


_layers = LruCache(64)  # a View's PlainLayer (or None: not plain) per layer id


def plain_layer(view: Any, layer_id: str) -> PlainLayer | None:
    """The layer's shared part in the View's query API; None when pygeoapi would not page it with our provider.
    Either answer is kept per View: a layer that is not plain (PostGIS's) is not looked up again per request."""
    return _layers.owned(view, layer_id, lambda: _plain_layer(view, layer_id))


def _plain_layer(view: Any, layer_id: str) -> PlainLayer | None:
    api = view.query_api
    resource = api.config["resources"].get(layer_id)
    if resource is None or resource.get("type") != "collection":
        return None
    try:
        provider_def = get_provider_by_type(resource["providers"], "feature")
    except Exception:  # noqa: BLE001 - no feature provider: the stack answers
        return None
    if provider_def.get("name") not in SHARED_PROVIDERS:
        return None
    provider = itemtypes_api.load_plugin("provider", provider_def)  # made once per definition (speedups)
    if not getattr(provider, "plain_pages", False):
        return None
    locale = l10n.str2locale(api.locales[0])  # APIRequest's locale without `lang` and Accept-Language
    headers = {**HEADERS, **api.api_headers}
    l10n.set_response_language(headers, SYSTEM_LOCALE)
    itemtypes_api.set_content_crs_header(headers, provider_def, None)
    language = l10n.get_plugin_locale(provider_def, None)
    l10n.set_response_language(headers, language, locale)
    if headers.get("Content-Type") == "application/json":  # server.ogcapi.routes._as_geojson
        headers["Content-Type"] = "application/geo+json"
    uri = f"{api.get_collections_url()}/{layer_id}/items"
    titles = tuple(
        l10n.translate(text, locale)
        for text in ("This document as GeoJSON", "This document as RDF (JSON-LD)", "This document as HTML")
    ) + (l10n.translate("Items (prev)", locale), l10n.translate("Items (next)", locale))
    layer = PlainLayer(
        api=api,
        provider=provider,
        limits=(api.config["server"].get("limits", {}), resource.get("limits", {})),
        storage_crs=provider_def.get("storage_crs", itemtypes_api.DEFAULT_STORAGE_CRS),
        crs_transform_spec=itemtypes_api.create_crs_transform_spec(provider_def, None),
        language=language,
        headers={name.lower(): value for name, value in headers.items()},
        uri=uri,
        titles=titles,
        collection_link={
            "type": FORMAT_TYPES[F_JSON],
            "title": l10n.translate(resource["title"], locale),
            "rel": "collection",
            "href": "/".join(uri.split("/")[:-1]),
        },
    )
    return layer


def plain_limit(layer: PlainLayer, query: PlainQuery) -> int:
    """The page's limit as pygeoapi reckons it (default, maximum); raises ValueError where pygeoapi answers 400.
    Reckoned once per `limit=` text: pygeoapi's evaluate_limit (a ChainMap, five debug log calls) cost ~3 % of a
    small bbox's CPU."""
    limit = layer.limit_of.get(query.limit)
    if limit is None:
        limit = evaluate_limit(query.limit, *layer.limits)
        if len(layer.limit_of) < MAX_LIMITS_KEPT:
            layer.limit_of[query.limit] = limit
    return limit


def storage_bbox(layer: PlainLayer, query: PlainQuery) -> list[float]:
    """The query's bbox in the layer's storage CRS, as pygeoapi hands it to the provider (empty: none)."""
    bbox = query.bbox
    return itemtypes_api.transform_bbox(bbox, itemtypes_api.DEFAULT_CRS, layer.storage_crs) if bbox else bbox


def plain_page(
    layer: PlainLayer, query: PlainQuery, limit: int, bbox: list[float], instant: InstantPage | None = None
) -> bytes:
    """The page's body as pygeoapi's get_collection_items writes it, `limit` as plain_limit reckons it and `bbox` as
    storage_bbox gives it. Raises whatever the provider raises; `instant`: the page as the provider's instant_page
    judged it for this bbox, offset and limit, read from what it judged (NotInstant when only SQL could answer)."""
    offset = query.offset
    if instant is not None:
        # its properties may come as SQLite wrote their JSON, which orjson writes as it is, and json (pretty) cannot
        content = instant.read(layer.crs_transform_spec, json_text=not layer.api.pretty_print)
    else:
        content = layer.provider.query(
            offset=offset,
            limit=limit,
            resulttype="results",
            bbox=bbox,
            datetime_=None,
            properties=[],
            sortby=[],
            skip_geometry=False,
            select_properties=[],
            crs_transform_spec=layer.crs_transform_spec,
            q=None,
            language=layer.language,
            filterq=None,
        )
    serialized = "".join(
        f"&{query_quoted(k, '')}={query_quoted(v, ',')}" for k, v in query.pairs if k not in ("f", "offset")
    )
    if "links" in content:  # pygeoapi would keep a provider's own `next`: ours never give links
        raise NotPlain("the provider gave links")
    uri, titles = layer.uri, layer.titles
    links = content["links"] = []
    links.extend(
        [
            {
                "type": "application/geo+json",
                "rel": "self",
                "title": titles[0],
                "href": f"{uri}?f={F_JSON}{serialized}",
            },
            {
                "rel": "alternate",
                "type": FORMAT_TYPES[F_JSONLD],
                "title": titles[1],
                "href": f"{uri}?f={F_JSONLD}{serialized}",
            },
            {
                "type": FORMAT_TYPES[F_HTML],
                "rel": "alternate",
                "title": titles[2],
                "href": f"{uri}?f={F_HTML}{serialized}",
            },
        ]
    )
    next_link = content.get("numberMatched", -1) > limit + offset or len(content["features"]) == limit
    if offset > 0:
        previous = max(0, offset - limit)
        links.append(
            {
                "type": "application/geo+json",
                "rel": "prev",
                "title": titles[3],
                "href": f"{uri}?offset={previous}{serialized}",
            }
        )
    if next_link:
        links.append(
            {
                "type": "application/geo+json",
                "rel": "next",
                "title": titles[4],
                "href": f"{uri}?offset={offset + limit}{serialized}",
            }
        )
    links.append(dict(layer.collection_link))
    # pygeoapi's strftime("%Y-%m-%dT%H:%M:%S.%fZ"), in half the time
    content["timeStamp"] = datetime.utcnow().isoformat(timespec="microseconds") + "Z"  # noqa: DTZ003 - pygeoapi's own
    return to_json_bytes(content, layer.api.pretty_print)  # what pygeoapi's to_json is patched to, UTF-8 encoded
