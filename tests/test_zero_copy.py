"""Files sent from the page cache (server/zero_copy.py): uvicorn's protocol with the ASGI zero-copy send extension,
on a real uvicorn server on a loopback port and real clients; a tile of the shared store is sent from its file and
never copied into the worker's LRU."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import morecantile
import pyogrio
import pytest

from layers.catalog import load_catalog
from server.app import create_app
from server.settings import ServerSettings
from server.zero_copy import ZERO_COPY_SEND, sends_files
from tests.server_fixtures import STAFF_KEY, key_entries, serving, start_server, stop_server

DEADLINE_SECONDS = 30
GRID = morecantile.tms.get("WebMercatorQuad")


def file_app(path: Path, seen: list):
    """Sends `path` with the extension when the server offers it (else says so with a 501)."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        seen.append(scope["client"][1])
        if not sends_files(scope):
            await send({"type": "http.response.start", "status": 501, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": ZERO_COPY_SEND, "file": file, "count": size})

    return app


@pytest.fixture
def big_file(tmp_path) -> Path:
    path = tmp_path / "tile.bin"
    path.write_bytes(os.urandom(3 * 2**20 + 17))
    return path


def test_a_file_is_sent_whole_after_its_headers_and_the_connection_kept(big_file):
    seen: list = []
    with serving(file_app(big_file, seen)) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as client:
        for _ in range(3):
            response = client.get("/")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(big_file.stat().st_size)
            assert response.content == big_file.read_bytes()
            assert client.head("/").content == b""  # HEAD: the length, no bytes
    assert len(seen) == 6 and len(set(seen)) == 1  # one keep-alive connection for all of them


def test_an_empty_file_is_an_empty_answer_and_the_connection_goes_on(tmp_path, big_file):
    empty = tmp_path / "empty.mvt"
    empty.write_bytes(b"")
    seen: list = []
    inner_empty, inner_big = file_app(empty, seen), file_app(big_file, seen)

    async def app(scope, receive, send):
        await (inner_empty if scope.get("path") == "/empty" else inner_big)(scope, receive, send)

    with serving(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as client:
        nothing = client.get("/empty")
        assert nothing.status_code == 200 and nothing.headers["content-length"] == "0" and nothing.content == b""
        assert client.get("/").content == big_file.read_bytes()
    assert len(set(seen)) == 1


def test_uvicorns_own_protocol_does_not_offer_it(big_file):
    """The extension is ours: without it the app is told the server cannot send files (the tile path then sends
    bytes, tested below)."""
    with serving(file_app(big_file, []), protocol="httptools") as url:
        assert httpx.get(url, timeout=DEADLINE_SECONDS).status_code == 501


def test_a_reader_slower_than_the_socket_gets_the_rest_of_the_file(tmp_path):
    """16 MB to a client that reads nothing until the app has returned: sendfile takes what the socket buffers
    hold, the rest goes through uvicorn's transport; the client still gets every byte, in order."""
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(16 * 2**20))
    returned = threading.Event()
    inner = file_app(path, [])

    async def app(scope, receive, send):
        await inner(scope, receive, send)
        if scope["type"] == "http":
            returned.set()

    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            client.connect(("127.0.0.1", port))
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert returned.wait(DEADLINE_SECONDS)
            client.settimeout(DEADLINE_SECONDS)
            received = bytearray()
            while chunk := client.recv(1 << 20):
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"content-length: {len(body)}".encode() in head
    assert body == path.read_bytes()


def test_a_streamed_answers_head_is_not_held_back_for_its_body():
    """Heads are held until the body's first bytes only for answers of a known length: a streamed (chunked) answer's
    head reaches the client while its body is still waited for."""
    head_seen = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not head_seen.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # polling interval: the client's thread sets it
        await send({"type": "http.response.body", "body": b"late" if head_seen.is_set() else b"held"})

    with serving(app) as url, httpx.stream("GET", url, timeout=DEADLINE_SECONDS) as response:
        head_seen.set()
        assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
        assert response.read() == b"late"


def test_a_tls_connection_is_not_offered_it(big_file, tmp_path):
    """sendfile would put the file's bytes on the wire unencrypted: over TLS the app is told it cannot."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl (Debian's openssl package) is needed to make the test's certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1"]
        + ["-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
    )
    with serving(file_app(big_file, []), ssl_keyfile=str(key), ssl_certfile=str(cert)) as url:
        assert httpx.get(url, verify=False, timeout=DEADLINE_SECONDS).status_code == 501


def test_a_stored_tile_is_sent_from_its_file_and_not_copied_into_the_worker(published_city, tmp_path):
    """The real app: a tile rendered by one server goes to the shared store; the next server (another worker, or a
    restart) answers it byte for byte from that file, again and again, and its LRU stays empty. Without the
    extension (uvicorn's own protocol) the same tile is read and kept in the LRU, as before."""
    catalog = load_catalog()
    settings = ServerSettings(cache_dir=tmp_path / "cache")
    repair = pyogrio.read_dataframe(published_city.published_path("repairs")).geometry.iloc[0]
    tile = GRID.tile(repair.x, repair.y, 14)
    path = f"/tiles/{tile.z}/{tile.x}/{tile.y}.pbf"

    first = create_app(catalog, published_city, settings)
    with serving(first) as url:
        rendered = httpx.get(url + path, timeout=DEADLINE_SECONDS)
        zipped = httpx.get(url + path, headers={"Accept-Encoding": "gzip"}, timeout=DEADLINE_SECONDS)
    assert rendered.status_code == 200 and rendered.content and zipped.headers["content-encoding"] == "gzip"

    second = create_app(catalog, published_city, settings)
    with serving(second) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as client:
        for _ in range(3):
            again = client.get(path)
            assert again.content == rendered.content and again.headers["etag"] == rendered.headers["etag"]
            assert client.get(path, headers={"Accept-Encoding": "gzip"}).content == zipped.content  # httpx unzips
            origin = client.get(path, headers={"Origin": "https://map.example"})
            assert origin.headers["access-control-allow-origin"] == "*" and origin.content == rendered.content
            assert client.get(path, headers={"If-None-Match": rendered.headers["etag"]}).status_code == 304
    assert len(second.state.tiles.cache) == 0  # answered from the file every time, never read into the worker

    third = create_app(catalog, published_city, settings)
    with serving(third, protocol="httptools") as url:
        assert httpx.get(url + path, timeout=DEADLINE_SECONDS).content == rendered.content
    assert len(third.state.tiles.cache) == 1


def test_a_stored_tile_through_the_tile_routes_is_sent_from_its_file(published_city, tmp_path):
    """What the early answers leave to the tile routes (a staff key's tiles, OGC API Tiles' paths) is sent from the
    shared store's file the same way: byte for byte, 304 on its ETag, nothing kept in the worker's LRU."""
    catalog = load_catalog()
    settings = ServerSettings(cache_dir=tmp_path / "cache", api_keys=key_entries())
    repair = pyogrio.read_dataframe(published_city.published_path("repairs")).geometry.iloc[0]
    tile = GRID.tile(repair.x, repair.y, 14)
    paths = [
        f"/tiles/{tile.z}/{tile.x}/{tile.y}.pbf",
        f"/collections/repairs/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}",
    ]
    staff_key = {"X-API-Key": STAFF_KEY}
    first = create_app(catalog, published_city, settings)
    with serving(first) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as client:
        rendered = [client.get(paths[0], headers=staff_key), client.get(paths[1])]
    assert [r.status_code for r in rendered] == [200, 200] and all(r.content for r in rendered)

    second = create_app(catalog, published_city, settings)
    with serving(second) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as client:
        for _ in range(2):
            for path, headers, before in zip(paths, [staff_key, {}], rendered, strict=True):
                again = client.get(path, headers=headers)
                assert again.content == before.content and again.headers["etag"] == before.headers["etag"]
                not_modified = client.get(path, headers={**headers, "If-None-Match": before.headers["etag"]})
                assert not_modified.status_code == 304 and not_modified.content == b""
    assert len(second.state.tiles.cache) == 0


def test_the_server_as_the_readme_starts_it_sends_stored_tiles_from_their_files(published_city, tmp_path):
    """`python -m server` (tests/server_fixtures.start_server): once the combined tileset is pre-rendered into the
    shared store, a tile asked twice on one connection is read from its file both times, never kept in the worker:
    the file changed in place between the two (which the pipeline never does: here only to see where the bytes
    come from) is what the second answer carries. With uvicorn's own protocol the first answer was kept in the LRU
    and the second was those bytes again."""
    repair = pyogrio.read_dataframe(published_city.published_path("repairs")).geometry.iloc[0]
    tile = GRID.tile(repair.x, repair.y, 14)
    server = start_server(published_city, tmp_path / "server.log")
    try:
        tiles = tmp_path / "cache" / "tiles"
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not list(tiles.glob("*/*/prerendered-z*")):
            assert time.monotonic() < deadline, "the combined tileset was not pre-rendered"
            time.sleep(0.05)  # polling interval: the worker pre-renders in the background
        plain = {"Accept-Encoding": "identity"}  # the pre-rendered bytes, not the gzipped ones (rendered when asked)
        with httpx.Client(base_url=server.url, headers=plain, timeout=DEADLINE_SECONDS) as client:
            first = client.get(f"/tiles/{tile.z}/{tile.x}/{tile.y}.pbf")
            assert first.status_code == 200 and first.content
            stored = [
                path
                for path in tiles.glob(f"*/*/{tile.z}-{tile.x}-{tile.y}-*.mvt")
                if path.read_bytes() == first.content
            ]
            assert len(stored) == 1
            with open(stored[0], "r+b") as file:
                file.write(first.content[::-1])
            again = client.get(f"/tiles/{tile.z}/{tile.x}/{tile.y}.pbf")
        assert again.content == first.content[::-1]
    finally:
        stop_server(server)
