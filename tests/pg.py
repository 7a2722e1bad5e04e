"""A throw-away PostgreSQL + PostGIS cluster for the tests: Debian's binaries, a temporary folder, a private port.

No system service is used or touched. `initdb` refuses to run as root, so as root the cluster belongs to the
`postgres` user (or `nobody`) through `runuser`; as anyone else it is the caller's own. Tests that need it take
the `postgres_url` fixture (import it into the test module) and are skipped, with the reason, where the
packages are not installed (`python3 dev.py test` installs them as root).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path(os.environ.get("GEOPORTAL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
START_SECONDS = 60.0


def missing_reason() -> str | None:
    """Why the cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL is not installed ({PG_BIN}/initdb missing; `python3 dev.py test` as root installs it)"
    if not POSTGIS_CONTROL.exists():
        return f"PostGIS is not installed ({POSTGIS_CONTROL} missing; `python3 dev.py test` as root installs it)"
    if os.geteuid() == 0 and _cluster_user() is None:
        return "running as root and neither a 'postgres' nor a 'nobody' user exists to own the cluster"
    return None


def _cluster_user() -> str | None:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """One initdb'ed data folder and its postmaster, owned by a non-root user when we are root."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="geoportal-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user = _cluster_user() if os.geteuid() == 0 else None
        if self.user:
            account = pwd.getpwnam(self.user)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.superuser = self.user or pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=START_SECONDS, cwd=self.folder
        )

    def start(self) -> None:
        init = self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.superuser, "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        # Loopback TCP only and the socket in our folder: nothing else on the machine is reachable or shared.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        started = self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options, "-w",
            "-t", str(int(START_SECONDS)), "start",
        )  # fmt: skip
        if started.returncode:
            log = (self.folder / "log").read_text(errors="replace")[-2000:] if (self.folder / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, postgis: bool = True) -> str:
        """A fresh database (with PostGIS when asked); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        if postgis:
            with psycopg.connect(self.url(name), autocommit=True) as connection:
                connection.execute("CREATE EXTENSION postgis")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


# Each test module imports the fixtures, which makes a session fixture per module: they share one cluster and one
# published city per process instead, stopped when the process exits.
_shared: dict[str, Any] = {}


def _started_cluster() -> Cluster:
    cluster = Cluster()
    try:
        cluster.start()
        deadline = time.monotonic() + START_SECONDS
        while True:  # pg_ctl -w waited for the socket; make sure TCP answers too
            try:
                socket.create_connection(("127.0.0.1", cluster.port), timeout=1).close()
                return cluster
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # polling interval while the postmaster opens its port
    except BaseException:
        cluster.stop()
        raise


@pytest.fixture(scope="session")
def postgres_cluster() -> Cluster:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    if "cluster" not in _shared:
        _shared["cluster"] = _started_cluster()
        atexit.register(_shared["cluster"].stop)
    return _shared["cluster"]


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh PostGIS database on the session's cluster, per test."""
    return postgres_cluster.create_database(f"geoportal_test_{next(_databases)}")


@pytest.fixture(scope="session")
def published_city_postgis(postgres_cluster: Cluster, tmp_path_factory) -> tuple[object, str]:
    """The sample city published as `published_city` is, with GEOPORTAL_STORE_URL naming a fresh PostGIS database:
    (its PathSettings, the database URL). The variable is set only while the pipeline runs."""
    if "city" in _shared:
        return _shared["city"]
    import dagster as dg

    from layers.catalog import load_catalog
    from pipelines.conflicts import rules_definitions
    from pipelines.factory import layer_assets
    from pipelines.raster import PRODUCT, disruption_load_asset
    from tests.conftest import SAMPLE_MOMENT, city_paths, resource_for

    url = postgres_cluster.create_database("geoportal_city")
    paths = city_paths(tmp_path_factory.mktemp("city_postgis"))
    catalog = load_catalog()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOPORTAL_STORE_URL", url)
        result = dg.materialize(
            [*layer_assets(catalog), disruption_load_asset(catalog), *rules_definitions(catalog).assets],
            resources={"geoportal": resource_for(paths)},
            raise_on_error=False,
            run_config={"ops": {PRODUCT: {"config": {"at": SAMPLE_MOMENT}}}},
        )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    _shared["city"] = paths, url
    return paths, url


def database_only_server(published_city_postgis: tuple, folder: Path):
    """`python -m server` over the PostGIS store alone (its published folder holds only the raster products, which
    stay files), with `.paths` set to the same run's GeoPackages for the suites that check answers against them."""
    from tests.conftest import city_paths
    from tests.server_fixtures import start_server

    paths, url = published_city_postgis
    database_only = city_paths(folder / "city")
    database_only.published_dir.mkdir(parents=True)
    for raster in paths.published_dir.glob("*.tif"):
        shutil.copy(raster, database_only.published_dir)
    running = start_server(database_only, folder / "server.log", {"GEOPORTAL_STORE_URL": url})
    running.paths = paths
    return running


@contextmanager
def server_on_own_cluster(folder: Path, database: str, publish) -> Iterator[tuple[Cluster, Any]]:
    """`python -m server` over a PostGIS database on a cluster of its own (the caller may stop it: the database going
    away is what such tests are about), after `publish(url)` filled it: (the cluster, the running server)."""
    from tests.conftest import city_paths
    from tests.server_fixtures import start_server, stop_server

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = Cluster()
    cluster.start()
    try:
        url = cluster.create_database(database)
        publish(url)
        server = start_server(city_paths(folder / "city"), folder / "server.log", {"GEOPORTAL_STORE_URL": url})
        try:
            yield cluster, server
        finally:
            stop_server(server)
    finally:
        cluster.stop()
