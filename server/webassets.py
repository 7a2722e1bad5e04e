"""Install the front-end packages of the web map and the HTML pages from the npm registry and copy them where the
server serves them (`server/static/vendor/`, at `/vendor/`), so every page works on a closed network without a CDN."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
# package → {file served at /vendor/<package>/<name>: its path in the npm package}
ASSETS = {
    "maplibre-gl": {name: f"dist/{name}" for name in ("maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt")},
    "bootstrap": {"bootstrap.min.css": "dist/css/bootstrap.min.css", "LICENSE": "LICENSE"},  # pygeoapi's pages
}


def _npm() -> str:
    npm = shutil.which("npm")
    if npm:
        return npm
    if os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "npm"], check=True, env=quiet)
        return shutil.which("npm") or sys.exit("npm was installed but is not on PATH")
    sys.exit("npm is needed to install the web map's MapLibre GL JS (apt-get install npm, or install Node.js)")


def installed() -> bool:
    return all((VENDOR / package / name).exists() for package, files in ASSETS.items() for name in files)


def install() -> None:
    modules = ROOT / "node_modules"
    if not all((modules / package / source).exists() for package, files in ASSETS.items() for source in files.values()):
        subprocess.run([_npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    for package, files in ASSETS.items():
        target = VENDOR / package
        target.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            shutil.copyfile(modules / package / source, target / name)


if __name__ == "__main__":
    if not installed():
        install()
