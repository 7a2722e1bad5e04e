#!/usr/bin/env python3
"""Set up and run the project on a fresh machine that has only Python >= 3.11.

    python3 dev.py run     # install, run the pipeline on the sample city, then serve it
    python3 dev.py test    # install (with test tools and the system packages tests need), run the tests
    python3 dev.py ui      # the Dagster UI on http://127.0.0.1:3000

Everything is installed into .venv/ next to this file; nothing outside it but, for the tests, Debian
packages (Chromium) when running as root with apt-get available.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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
    # DAGSTER_HOME is the repository root: dagster.yaml there is the instance configuration.
    return {**os.environ, "DAGSTER_HOME": str(ROOT), "PYTHONUNBUFFERED": "1"}


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    env = environment()
    if command == "run":
        ensure_venv("")
        ensure_web_assets()
        pipeline = subprocess.run([str(PYTHON), "-m", "pipelines"], cwd=ROOT, env=env)
        if pipeline.returncode != 0:
            say("some layers were not published (see above); serving what was")
        os.execve(PYTHON, [str(PYTHON), "-m", "server", *argv[1:]], env)
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
