"""Access levels through the real server: nothing internal leaks without a key, everything shows with one."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.server_fixtures import (  # noqa: F401 - fixtures
    STAFF_KEY,
    VISITOR_KEY,
    anonymous,
    published_frame,
    server,
    staff,
)

INTERNAL_FIELDS = {"repairs": ["contractor_phone", "notes"], "police_precincts": ["officer_phone"]}


@pytest.fixture(scope="module")
def address_id(server):  # noqa: F811
    return int(published_frame(server.paths, "addresses").index[0])


def everywhere(address_id: int) -> list[str]:
    """Every endpoint an internal layer could show up on, in JSON and HTML."""
    paths = [
        "/", "/collections", "/openapi", "/conformance",
        "/collections/addresses", "/collections/addresses/items", f"/collections/addresses/items/{address_id}",
        "/collections/addresses/queryables", "/collections/addresses/schema",
    ]  # fmt: skip
    return [f"{path}?f={f}" for path in paths for f in ("json", "html")] + ["/downloads/addresses.gpkg"]


def test_without_a_key_the_internal_layer_does_not_exist(anonymous, address_id):  # noqa: F811
    for url in everywhere(address_id):
        response = anonymous.get(url)
        if "/addresses" in url:
            assert response.status_code == 404, url
        else:
            assert response.status_code == 200, url
            assert "addresses" not in response.text.replace('"addresses":[]', ""), url  # (an empty OGC contact list)


def test_with_a_staff_key_it_is_everywhere(staff, address_id):  # noqa: F811
    for url in everywhere(address_id):
        response = staff.get(url)
        assert response.status_code == 200, url
        if url in ("/collections?f=json", "/collections?f=html", "/openapi?f=json"):  # the listings
            assert "addresses" in response.text, url


def test_bearer_token_works_like_the_header(server, address_id):  # noqa: F811
    response = httpx.get(f"{server.url}/collections/addresses", headers={"Authorization": f"Bearer {STAFF_KEY}"})
    assert response.status_code == 200


def test_internal_fields_are_invisible_without_a_key(anonymous, server):  # noqa: F811
    for layer_id, fields in INTERNAL_FIELDS.items():
        fid = int(published_frame(server.paths, layer_id).index[0])
        for url in [
            f"/collections/{layer_id}/items?f=json", f"/collections/{layer_id}/items?f=html",
            f"/collections/{layer_id}/items/{fid}?f=json", f"/collections/{layer_id}/items/{fid}?f=html",
            f"/collections/{layer_id}/queryables", f"/collections/{layer_id}/schema", "/openapi",
        ]:  # fmt: skip
            text = anonymous.get(url).text
            assert not any(field in text for field in fields), url
        for params in [{"properties": fields[0]}, {"sortby": fields[0]}, {"filter": f"{fields[0]} IS NULL"}]:
            assert anonymous.get(f"/collections/{layer_id}/items", params=params).status_code == 400, params


def test_internal_fields_are_cut_out_of_the_public_download(anonymous, staff, server, tmp_path):  # noqa: F811
    phones = published_frame(server.paths, "repairs")["contractor_phone"].dropna()
    assert len(phones)
    public = anonymous.get("/downloads/repairs.gpkg")
    full = staff.get("/downloads/repairs.gpkg")
    assert public.status_code == full.status_code == 200
    assert public.headers["content-type"] == "application/geopackage+sqlite3"
    assert full.content == server.paths.published_path("repairs").read_bytes()
    assert not any(phone.encode() in public.content for phone in phones)  # not even in freed pages
    (tmp_path / "public.gpkg").write_bytes(public.content)
    with sqlite3.connect(tmp_path / "public.gpkg") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(repairs)")}
        count = db.execute("SELECT count(*) FROM repairs").fetchone()[0]
    assert not columns & {"contractor_phone", "notes"} and "permit_id" in columns
    assert count == len(published_frame(server.paths, "repairs"))


def test_download_links_announce_the_size_served(anonymous, staff):  # noqa: F811
    for client in (anonymous, staff):
        link = next(x for x in client.get("/collections/repairs").json()["links"] if x["rel"] == "enclosure")
        head = client.head(link["href"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == link["length"]
        assert len(client.get(link["href"]).content) == link["length"]


def test_internal_fields_are_visible_with_a_key(staff, server):  # noqa: F811
    for layer_id, fields in INTERNAL_FIELDS.items():
        feature = staff.get(f"/collections/{layer_id}/items", params={"limit": 1}).json()["features"][0]
        assert set(fields) <= set(feature["properties"])
        assert set(fields) <= set(staff.get(f"/collections/{layer_id}/queryables").json()["properties"])


def test_a_wrong_key_is_refused_everywhere_with_a_json_401(server):  # noqa: F811
    with server.client("not-a-key") as client:
        for url in [
            "/",
            "/collections",
            "/collections/repairs/items",
            "/downloads/repairs.gpkg",
            "/static/img/logo.png",
        ]:
            response = client.get(url)
            assert response.status_code == 401, url
            assert response.json()["code"] == "NotAuthorized" and response.json()["description"]


def test_a_public_level_key_gets_403_on_internal_layers(server):  # noqa: F811
    with server.client(VISITOR_KEY) as visitor:
        assert visitor.get("/collections/repairs/items").status_code == 200
        assert "contractor_phone" not in visitor.get("/collections/repairs/items").text
        for url in ["/collections/addresses", "/collections/addresses/items", "/downloads/addresses.gpkg"]:
            response = visitor.get(url)
            assert response.status_code == 403, url
            assert response.json()["code"] == "Forbidden"
        assert "addresses" not in {c["id"] for c in visitor.get("/collections").json()["collections"]}


def test_html_pages_of_one_level_never_borrow_the_others_configuration(server, address_id):  # noqa: F811
    # pygeoapi caches one translated configuration per locale for the process; staff renders first here
    with server.client(STAFF_KEY) as staff_client, server.client() as anonymous_client:
        for url in ["/collections/addresses?f=html", "/collections/repairs?f=html", "/?f=html"]:
            assert staff_client.get(url).status_code == 200
        for url in ["/collections/repairs?f=html", "/collections/repairs/items?f=html", "/collections?f=html"]:
            response = anonymous_client.get(url)
            assert response.status_code == 200 and "contractor_phone" not in response.text, url
        assert staff_client.get(f"/collections/addresses/items/{address_id}?f=html").status_code == 200


def test_responses_vary_by_key(anonymous):  # noqa: F811
    assert "X-API-Key" in anonymous.get("/collections").headers["vary"]
