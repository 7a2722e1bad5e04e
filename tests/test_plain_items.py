"""A plain item page (server/ogcapi/plain_items.py), with or without a key, is answered as pygeoapi's items handler
answers it.

Two servers over the same published sample city (GeoPackage files, then PostGIS), started as `python -m server` is,
with the same public URL: one as shipped, one with the plain pages off (GEOPORTAL_SERVER_PLAIN_PAGES=false: every
page through pygeoapi). Both get the same several hundred random requests in the same order — the kinds the early
answers read without a key, nearby kinds with a key (which the items route reads the same way, after the access
dispatcher) and those they must leave to pygeoapi (internal layers without a key, other parameters, bad values,
other formats and languages, bodies) — and must answer each alike: the status, every header in order but the date,
server and worker names, and the body byte for byte with `timeStamp` aside.
"""

from __future__ import annotations

import random
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from pygeoapi.api.itemtypes import validate_bbox

from layers.catalog import load_catalog
from server.errors import BadRequest
from server.ogcapi import params
from server.ogcapi.plain_items import plain_query, plain_request, query_pairs, query_quoted
from tests import pg
from tests.conftest import city_paths
from tests.server_fixtures import STAFF_KEY, VISITOR_KEY, RunningServer, start_server, stop_server

PUBLIC_URL = "http://geoportal.test"  # both servers link to the same place
UNCOMPARED = {"date", "server", "x-server-worker"}  # the moment, uvicorn's name, the process
TIMESTAMP = re.compile(rb'"timeStamp": ?"[^"]*"')
STAMP_FORM = re.compile(rb'"timeStamp": ?"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"')
WEST, SOUTH, EAST, NORTH = 103.95, 52.15, 104.55, 52.45  # the sample city's extent (layers/_city.yaml)
REQUESTS = 700
SEED = 20261203


postgres_cluster, postgres_url, published_city_postgis = pg.postgres_cluster, pg.postgres_url, pg.published_city_postgis


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def servers(request, tmp_path_factory) -> Iterator[tuple[RunningServer, RunningServer]]:
    """(plain pages on, off) over the sample city in either store."""
    env = {"GEOPORTAL_SERVER_PUBLIC_URL": PUBLIC_URL, "GEOPORTAL_SERVER_DEFAULT_ITEMS": "10"}
    folder = tmp_path_factory.mktemp(f"plain_{request.param}")
    if request.param == "geopackage":
        paths = request.getfixturevalue("published_city")
    else:
        published, url = request.getfixturevalue("published_city_postgis")
        paths = city_paths(folder / "city")
        paths.published_dir.mkdir(parents=True)
        for raster in published.published_dir.glob("*.tif"):  # raster products stay files
            shutil.copy(raster, paths.published_dir)
        env["GEOPORTAL_STORE_URL"] = url
    plain = start_server(paths, folder / "plain.log", env)
    try:
        stack = start_server(paths, folder / "stack.log", {**env, "GEOPORTAL_SERVER_PLAIN_PAGES": "false"})
    except BaseException:
        stop_server(plain)
        raise
    yield plain, stack
    stop_server(plain)
    stop_server(stack)


@dataclass
class Asked:
    path: str
    query: str  # as sent, already encoded
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    plain: bool = False  # a kind the plain pages answer


def _number(rng: random.Random, value: float) -> str:
    return rng.choice([f"{value:.5f}", repr(value), f"{value:.2f}", f"{value:.6e}".replace("+", "%2B")])


def _bbox(rng: random.Random) -> str:
    size = rng.choice([0.001, 0.01, 0.01, 0.05, 0.3, 1.0])
    x = rng.uniform(WEST - 0.2, EAST)
    y = rng.uniform(SOUTH - 0.1, NORTH)
    numbers = [_number(rng, v) for v in (x, y, x + size, y + size)]
    for low, high in ((0, 2), (1, 3)):  # rounding must not turn a minimum above its maximum (that is a bad bbox)
        if float(numbers[low].replace("%2B", "+")) > float(numbers[high].replace("%2B", "+")):
            numbers[low], numbers[high] = repr((x, y)[low]), repr((x + size, y + size)[low])
    return rng.choice([",", "%2C"]).join(numbers)


def _plain(rng: random.Random, layer: str) -> Asked:
    parts = []
    if rng.random() < 0.85:
        parts.append(f"bbox={_bbox(rng)}")
    if rng.random() < 0.7:
        parts.append(f"limit={rng.choice([1, 2, 5, 10, 10, 25, 100, 20000])}")
    if rng.random() < 0.4:
        parts.append(f"offset={rng.choice([0, 1, 3, 10, 50, 500, 100000])}")
    if rng.random() < 0.3:
        parts.append("f=json")
    rng.shuffle(parts)
    headers = rng.choice(
        [
            {},
            {"Accept": "*/*"},
            {"Accept": "application/geo+json"},
            {"Accept": "application/json"},
            {"Origin": "https://a.example"},
        ]
    )
    return Asked(f"/collections/{layer}/items", "&".join(parts), dict(headers), plain=True)


NEARBY_PARAMETERS = [
    "datetime=2026-01-01T00:00:00Z/..",
    "properties=status",
    "sortby=-fid",
    "skipGeometry=true",
    "crs=http://www.opengis.net/def/crs/EPSG/0/3857",
    "bbox-crs=http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "lang=en",
    "filter=status%3D%27active%27",
    "q=test",
    "foo=1",
    "status=active",
    "resulttype=hits",
    "limit=5&limit=6",
    "bbox=104,52.2,104.1",
    "bbox=104,52.2,nan,52.3",
    "bbox=104,52.2,inf,52.3",
    "bbox=104.1,52.2,104,52.3",
    "bbox=a,b,c,d",
    "bbox=",
    "bbox=104,52.2,0,104.1,52.3,10",
    "limit=0",
    "limit=-1",
    "limit=abc",
    "limit=1.5",
    "limit=+5",
    "limit=%205",
    "offset=-1",
    "offset=x",
    "offset=1000000000000",
    "f=html",
    "f=jsonld",
    "f=JSON",
    "f=xml",
    "f=",
]


def _nearby(rng: random.Random, layers: list[str], internal: list[str]) -> Asked:
    """A request like a plain one in all but one respect that the plain pages leave to the stack."""
    asked = _plain(rng, rng.choice(layers))
    asked.plain = False
    kind = rng.randrange(6)
    if kind == 0:
        asked.headers["X-API-Key"] = rng.choice([VISITOR_KEY, STAFF_KEY])
    elif kind == 1:
        asked.path = f"/collections/{rng.choice(internal)}/items"
        if rng.random() < 0.5:
            asked.headers["X-API-Key"] = STAFF_KEY
    elif kind == 2:
        asked.query = "&".join(filter(None, [asked.query, rng.choice(NEARBY_PARAMETERS)]))
    elif kind == 3:
        asked.headers.update(
            rng.choice(
                [
                    {"Accept": "text/html"},
                    {"Accept": "application/ld+json"},
                    {"Accept": "text/html;q=0.5,application/json"},
                    {"Accept-Language": rng.choice(["en", "ru", "de", "en-US,en;q=0.9"])},
                    {"If-None-Match": '"abc"'},
                ]
            )
        )
    elif kind == 4:
        asked.body = b'{"op": "=", "args": [{"property": "status"}, "active"]}'
    else:
        asked.path = rng.choice([f"/collections/{rng.choice(layers)}/items/", "/collections/nowhere/items"])
    return asked


def _requests(layers: list[str], internal: list[str]) -> list[Asked]:
    rng = random.Random(SEED)
    return [
        _plain(rng, rng.choice(layers)) if rng.random() < 0.5 else _nearby(rng, layers, internal)
        for _ in range(REQUESTS)
    ]


def _answer(client: httpx.Client, asked: Asked) -> tuple[int, list, bytes]:
    url = asked.path + (f"?{asked.query}" if asked.query else "")
    if asked.body is None:
        response = client.get(url, headers=asked.headers)
    else:
        response = client.request("GET", url, headers=asked.headers, content=asked.body)
    kept = [(name, value) for name, value in response.headers.multi_items() if name not in UNCOMPARED]
    # the moment differs, its form may not: pygeoapi's strftime("%Y-%m-%dT%H:%M:%S.%fZ") on either server
    body, stamps = TIMESTAMP.subn(b'"timeStamp":""', response.content)
    if stamps:
        assert STAMP_FORM.fullmatch(TIMESTAMP.search(response.content)[0]), response.content[:300]
    return response.status_code, kept, body


def _is_plain(asked: Asked) -> bool:
    headers = [(name.lower().encode(), value.encode()) for name, value in asked.headers.items()]
    if asked.body is not None:
        headers.append((b"content-length", str(len(asked.body)).encode()))
    return plain_request(headers, asked.query.encode()) is not None


def test_plain_pages_answer_as_pygeoapi_does(servers) -> None:
    plain, stack = servers
    catalog = load_catalog()
    layers = sorted(spec.id for spec in catalog.values() if spec.access == "public")
    internal = sorted(spec.id for spec in catalog.values() if spec.access != "public")
    asked = _requests(layers, internal)
    # the mix holds both kinds, each recognised as the server recognises it
    assert all(_is_plain(a) for a in asked if a.plain)
    assert sum(a.plain for a in asked) >= REQUESTS // 3 and sum(not a.plain for a in asked) >= REQUESTS // 3
    statuses = set()
    # httpx's own headers (Accept: */*, Accept-Encoding) are the same for both; no keep-alive state differs
    with (
        httpx.Client(base_url=plain.url, timeout=60) as to_plain,
        httpx.Client(base_url=stack.url, timeout=60) as to_stack,
    ):
        for each in asked:
            got, expected = _answer(to_plain, each), _answer(to_stack, each)
            assert got == expected, (each, got[:2], expected[:2])
            statuses.add(expected[0])
            if each.plain and expected[0] == 200:
                assert expected[2].startswith(b'{"type":"FeatureCollection"')
    assert {200, 400, 404} <= statuses


def test_a_plain_page_asked_again_is_the_page_kept(servers) -> None:
    """The plain page is kept in the page cache as the items route keeps it: asked again (keyed: through the stack,
    which answers from that cache), it is the same page, `timeStamp` included."""
    plain, _ = servers
    path = "/collections/repairs/items?bbox=104.2,52.25,104.3,52.3&limit=3"
    with httpx.Client(base_url=plain.url, timeout=60) as client:
        first = client.get(path)
        again = client.get(path, headers={"X-API-Key": VISITOR_KEY})
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.json()["numberReturned"] == 3


QUERY_PIECES = ["bbox", "limit", "offset", "f", "a", "", "=", "&", "&&", "1", "104.5", ",", ";", "+", "%2C", "%2B", "%",
                "%zz", "%D0%B0", "а", "b=c", "==", " ", "?", "#"]  # fmt: skip


def test_a_plain_querys_pairs_are_the_ones_starlette_parses() -> None:
    """plain_items.query_pairs splits a query without `%` or `+` itself: it must be parse_qsl's split of it (blank
    values kept), for any query, also the ones given to parse_qsl."""
    rng = random.Random(SEED)
    queries = ["", "&", "a", "=x", "a=", "a=b=c", "&a=1&&b=2&", "a=1&a=2", "bbox=104.1,52.2,104.2,52.3&limit=10"]
    queries += ["".join(rng.choice(QUERY_PIECES) for _ in range(rng.randrange(1, 12))) for _ in range(5000)]
    fast = 0
    for query in queries:
        assert query_pairs(query) == tuple(urllib.parse.parse_qsl(query, keep_blank_values=True)), query
        fast += "%" not in query and "+" not in query
    assert fast >= 1000  # both ways are exercised


def test_a_plain_querys_bbox_is_the_one_pygeoapi_validates() -> None:
    """plain_query takes the bbox its own check parsed; pygeoapi's validate_bbox makes the same floats of any bbox
    that check lets through (and refuses none of them)."""
    rng = random.Random(SEED)
    for _ in range(3000):
        numbers = [rng.choice([rng.uniform(-180, 180), rng.randrange(-90, 90), 0.0, -0.0, 1e-300]) for _ in range(4)]
        numbers[2], numbers[3] = max(numbers[0], numbers[2]), max(numbers[1], numbers[3])
        text = ",".join(rng.choice([repr(n), f"{n:.5f}", f"{n:.3e}", f" {n}"]) for n in numbers)
        query = plain_query(f"bbox={urllib.parse.quote(text)}&limit=10".encode())
        if query is None:  # a rounding put a minimum above its maximum: refused by both
            with pytest.raises(BadRequest):
                params.bbox(text)
            continue
        assert query.bbox == validate_bbox(text), text
        assert [repr(n) for n in query.bbox] == [repr(n) for n in validate_bbox(text)]  # -0.0 stays -0.0


def test_a_plain_pages_links_quote_the_query_as_urllib_does() -> None:
    """The links' query is quoted as urllib.parse.quote quotes it; names and numbers with nothing to quote are taken
    as they are, any other text is given to quote."""
    rng = random.Random(SEED)
    alphabet = "aZ09_.-~,;/?:@&=+$ %#\"'<>[]\\^`{|}!*()\x00\x7fаé€😀"
    texts = ["", "bbox", "104.12345,52.2,104.2,52.3", "1e-05", "-0.0", "a b", "~", "%2C"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8))) for _ in range(5000)]
    for text in texts:
        for safe in ("", ","):
            assert query_quoted(text, safe) == urllib.parse.quote(text, safe=safe), (text, safe)


def test_a_keyed_plain_page_is_read_without_pygeoapis_handler(published_city, tmp_path, monkeypatch) -> None:
    """With a key the access dispatcher chooses the View (staff: internal layers and fields); a plain page of it is
    then read as the early answers read a public one, without pygeoapi's items handler (made to count its calls
    here), which still answers every other page. Staff's small bbox went through that handler (~1,000 req/s on
    1M points). What either answers is the same: test_plain_pages_answer_as_pygeoapi_does, keyed requests included."""
    import pygeoapi.api.itemtypes as itemtypes_api

    from server.app import create_app
    from server.settings import ServerSettings
    from tests.server_fixtures import key_entries, serving

    handled: list[str] = []
    handler = itemtypes_api.get_collection_items

    def counted(api, request, collection_id, *args, **kwargs):
        handled.append(collection_id)
        return handler(api, request, collection_id, *args, **kwargs)

    monkeypatch.setattr(itemtypes_api, "get_collection_items", counted)
    settings = ServerSettings(cache_dir=tmp_path / "cache", api_keys=key_entries())
    app = create_app(load_catalog(), published_city, settings)
    bbox = f"bbox={WEST},{SOUTH},{EAST},{NORTH}"
    with serving(app) as url, httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": STAFF_KEY}) as staff:
        for layer in ("addresses", "repairs"):  # internal, public
            page = staff.get(f"/collections/{layer}/items?{bbox}&limit=5&offset=1")
            assert page.status_code == 200 and page.json()["numberReturned"] == 5, page.text
        assert handled == []
        sorted_page = staff.get(f"/collections/repairs/items?{bbox}&limit=5&sortby=-start_time")
        assert sorted_page.status_code == 200
        assert handled == ["repairs"]
        assert httpx.get(f"{url}/collections/addresses/items?{bbox}", timeout=60).status_code == 404
