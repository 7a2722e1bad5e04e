"""Fixtures for the server tests: API keys, and the real server (`python -m server`) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from layers.settings import REPO_ROOT, PathSettings
from server.auth import hash_key
from server.zero_copy import ZeroCopyHttpToolsProtocol
from tests.conftest import city_paths, path_environment

STARTUP_SECONDS = 60
# Keys of the test run only; what the server gets is their hashes.
STAFF_KEY = "staff-key-for-tests-0123456789abcdef"
VISITOR_KEY = "visitor-key-for-tests-0123456789abcd"


@dataclass
class RunningServer:
    url: str
    paths: PathSettings
    log: Path
    process: subprocess.Popen = field(repr=False)

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def key_entries() -> str:
    return f"staff:internal:{hash_key(STAFF_KEY)},visitor:public:{hash_key(VISITOR_KEY)}"


def start_server(
    paths: PathSettings, log: Path, extra_env: dict[str, str] | None = None, args: list[str] | None = None
) -> RunningServer:
    """`python -m server [args]` as a user runs it; ready once the landing page answers (bounded by a deadline).
    With `--port` in `args` the flag, not the environment, decides where it listens."""
    port = int(args[args.index("--port") + 1]) if args and "--port" in args else free_port()
    env = {
        **os.environ,
        **path_environment(paths),
        "GEOPORTAL_SERVER_HOST": "127.0.0.1",
        "GEOPORTAL_SERVER_PORT": str(port if not args or "--port" not in args else free_port()),
        "GEOPORTAL_SERVER_API_KEYS": key_entries(),
        "GEOPORTAL_SERVER_CACHE_DIR": str(log.parent / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GEOPORTAL_SERVER_PUBLIC_URL", None)  # the caller's environment's: only `extra_env` may set one
    env.update(extra_env or {})
    handle = open(log, "wb")  # noqa: SIM115 - the process writes to it until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "server", *(args or [])], cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
    )
    server = RunningServer(url=f"http://127.0.0.1:{port}", paths=paths, log=log, process=process)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(server.url + "/", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"server not ready after {STARTUP_SECONDS}s:\n{server.log_text()}")
        time.sleep(0.1)  # polling interval while waiting for readiness, not a synchronisation


@contextmanager
def serving(app, protocol=ZeroCopyHttpToolsProtocol, **options) -> Iterator[str]:
    """The app under uvicorn in a thread, with `protocol` (the one `python -m server` gives uvicorn by default), on a
    loopback socket bound here: its base URL. For tests that look inside the app while it serves."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=protocol, log_level="warning", lifespan="auto", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)  # polling interval while it starts
    try:
        yield "http{}://127.0.0.1:{}".format("s" if "ssl_certfile" in options else "", sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)
        sock.close()


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


# Each test module imports the fixtures, which makes a session fixture per module: they share one server.
_shared: dict[Path, RunningServer] = {}


@pytest.fixture(scope="session")
def server(published_city: PathSettings, tmp_path_factory) -> Iterator[RunningServer]:
    """The server over the sample city; tests only read through it."""
    if published_city.published_dir not in _shared:
        log = tmp_path_factory.mktemp("server") / "server.log"
        _shared[published_city.published_dir] = start_server(published_city, log)
    running = _shared[published_city.published_dir]
    yield running
    stop_server(running)


@pytest.fixture
def private_server(published_city: PathSettings, tmp_path: Path) -> Iterator[RunningServer]:
    """A server over its own copy of the published files, for tests that republish layers."""
    paths = city_paths(tmp_path / "city")
    shutil.copytree(published_city.published_dir, paths.published_dir)
    running = start_server(paths, tmp_path / "server.log")
    yield running
    stop_server(running)


@pytest.fixture
def staff(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client(STAFF_KEY) as client:
        yield client


@pytest.fixture
def anonymous(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def published_frame(paths: PathSettings, layer_id: str):
    """The published layer as the pipeline wrote it, indexed by fid: what the API answers are checked against."""
    import pyogrio

    return pyogrio.read_dataframe(paths.published_path(layer_id), fid_as_index=True)


def fetch(client: httpx.Client, url: str, **params) -> dict:
    response = client.get(url, params=params) if params else client.get(url)  # params={} would drop the query
    assert response.status_code == 200, response.text
    return response.json()


def walk(client: httpx.Client, url: str, **params) -> list[dict]:
    """Every feature of a query, following `next` links as QGIS and GDAL do."""
    page = fetch(client, url, **params)
    features = list(page["features"])
    while (following := next((link["href"] for link in page["links"] if link["rel"] == "next"), None)) is not None:
        page = fetch(client, following)
        features += page["features"]
    return features
