#!/usr/bin/env python3
"""Set up and run the project on a fresh machine that has only Python >= 3.11.

    python3 dev.py run     # install, publish the sample city, then run the live portal (Ctrl-C stops it):
                           # the Dagster daemon (inbox sensor, schedules), the Dagster UI and the OGC API server
    python3 dev.py test    # install (with test tools and the system packages tests need), run the tests
    python3 dev.py ui      # only the Dagster UI (with its own daemon) on http://127.0.0.1:3000

The Dagster instance is $DAGSTER_HOME (default: .dagster/ here, with this repository's dagster.yaml linked in).

Everything is installed into .venv/ next to this file; nothing outside it but, for the tests, Debian
packages (Chromium) when running as root with apt-get available.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
# Debian packages the test suite drives: a real headless browser for the web-map tests, GDAL 3.6
# (the GDAL of QGIS 3.22 LTR) to prove the GeoPackages open in it without warnings, and QGIS 3.22
# itself (headless) to prove it draws our QML styles and vector tiles.
TEST_DEBIAN_PACKAGES = {
    "chromium": "/usr/bin/chromium",
    "gdal-bin": "/usr/bin/ogrinfo",
    "python3-qgis": "/usr/lib/python3/dist-packages/qgis/core/__init__.py",
    "qgis-providers": "/usr/lib/qgis/plugins/libprovider_delimitedtext.so",
    # PostgreSQL with PostGIS for the second store and Dagster's PostgreSQL storage: the tests start a
    # throw-away cluster of their own (tests/pg.py); the system service is never used.
    "postgresql": "/usr/lib/postgresql/15/bin/initdb",
    "postgresql-15-postgis-3": "/usr/share/postgresql/15/extension/postgis.control",
    "poppler-utils": "/usr/bin/pdftoppm",  # the daily summary's PDF turned into an image and text
}


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT, env=env)


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 is first
        sys.exit(f"Python >= 3.11 is needed, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'main'}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    say("installing Python dependencies (first run takes a few minutes)")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]" if extras else ".")
    stamp.write_text(wanted)


def ensure_web_assets() -> None:
    """MapLibre GL JS from the npm registry, served by our own server (no CDN on a closed network)."""
    script = ROOT / "server" / "webassets.py"
    if script.exists():
        run(PYTHON, script)


def ensure_debian_packages() -> None:
    missing = [name for name, binary in TEST_DEBIAN_PACKAGES.items() if not Path(binary).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say(f"not installing {missing}: needs root and apt-get; the tests that need them will be skipped")
        return
    say(f"installing Debian packages {missing}")
    quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=quiet)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=quiet)


def environment() -> dict[str, str]:
    """The instance lives in $DAGSTER_HOME (default .dagster/ here, git-ignored); without a dagster.yaml of
    its own it gets this repository's, linked, so its storage resolves inside that home; with DAGSTER_POSTGRES_URL
    set it gets the PostgreSQL profile (dagster.postgres.yaml) instead."""
    home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    on_postgres = bool(os.environ.get("DAGSTER_POSTGRES_URL"))
    if not config.exists():
        config.symlink_to(ROOT / ("dagster.postgres.yaml" if on_postgres else "dagster.yaml"))
    limits = {"DAGSTER_MAX_CONCURRENT_RUNS": os.environ.get("DAGSTER_MAX_CONCURRENT_RUNS", "2")} if on_postgres else {}
    return {**os.environ, **limits, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def live_services(env: dict[str, str]) -> dict[str, list[str]]:
    """The live portal: the daemon runs the inbox sensor and the schedules, the UI shows the runs, the
    server publishes what they write; all three on the same instance and folders."""
    ui_port = env.get("GEOPORTAL_UI_PORT", "3000")
    bin_dir = PYTHON.parent
    return {
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-m", "pipelines"],
        "ui": [str(bin_dir / "dagster-webserver"), "-m", "pipelines", "-h", "127.0.0.1", "-p", ui_port],
        "server": [str(bin_dir / "python"), "-m", "server"],
    }


def _stop_groups(children: dict[str, subprocess.Popen], seconds: float) -> None:
    """SIGTERM to each child's whole process group (the daemon's code server, the server's workers), then
    SIGKILL to whatever is left after `seconds`: nothing outlives the supervisor."""
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for name, child in children.items():
        while True:
            child.poll()
            try:
                os.killpg(child.pid, 0)  # any member of the group still alive?
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                say(f"{name} did not stop within {seconds:.0f} s: killed")
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                break
            time.sleep(0.1)  # polling for the group to empty, bounded by the deadline


def supervise(services: dict[str, list[str]], env: dict[str, str], stop_seconds: float = 20.0) -> int:
    """Run the services together until Ctrl-C/SIGTERM or until one of them exits; then stop them all.
    Each child gets its own process group, so a terminal's Ctrl-C reaches only this supervisor, which stops
    the children in order and leaves no orphans."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: dict[str, subprocess.Popen] = {}
    code = 0
    try:
        for name, command in services.items():
            children[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
            say(f"started {name} (pid {children[name].pid}): {' '.join(command)}")
        while not stop.wait(0.5):
            ended = next((name for name, child in children.items() if child.poll() is not None), None)
            if ended:
                code = children[ended].returncode or 1
                say(f"{ended} exited with code {children[ended].returncode}: stopping the others")
                break
    finally:
        say("stopping " + ", ".join(children))
        _stop_groups(children, stop_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def urls(env: dict[str, str]) -> str:
    ui = f"http://127.0.0.1:{env.get('GEOPORTAL_UI_PORT', '3000')}"
    server = f"http://{env.get('GEOPORTAL_SERVER_HOST', '127.0.0.1')}:{env.get('GEOPORTAL_SERVER_PORT', '5000')}"
    return "\n".join(
        [
            f"OGC API landing page   {server}/   (collections {server}/collections, OpenAPI {server}/openapi)",
            f"Web map                {server}/map/",
            f"Vector tiles           {server}/tiles/{{z}}/{{x}}/{{y}}.pbf",
            f"Dagster UI             {ui}  (runs, sensor ticks, schedules)",
            f"Deliveries             {env.get('GEOPORTAL_INBOX_DIR', ROOT / 'data' / 'inbox')}/<domain>/",
            f"Dagster instance       {env['DAGSTER_HOME']}",
            "Ctrl-C stops everything.",
        ]
    )


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    env = environment()
    if command == "run":
        ensure_venv("")
        ensure_web_assets()
        pipeline = subprocess.run([str(PYTHON), "-m", "pipelines"], cwd=ROOT, env=env)
        if pipeline.returncode != 0:
            say("some layers were not published (see above); serving what was")
        say("the live portal:\n" + urls(env))
        return supervise(live_services(env), env)
    if command == "test":
        ensure_venv("test")
        ensure_debian_packages()
        ensure_web_assets()
        return subprocess.run([str(PYTHON), "-m", "pytest", *argv[1:]], cwd=ROOT, env=env).returncode
    if command == "ui":
        ensure_venv("")
        os.execve(
            PYTHON, [str(PYTHON), "-m", "dagster", "dev", "-m", "pipelines", "-h", "127.0.0.1", "-p", "3000"], env
        )
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
