"""Install the web map's front-end packages from the npm registry and copy them where the server
serves them (`server/static/vendor/`), so the map works on a closed network without a CDN."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
# package → files of its dist/ the page loads
ASSETS = {"maplibre-gl": ["maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt"]}


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
    return all((VENDOR / package / name).exists() for package, names in ASSETS.items() for name in names)


def install() -> None:
    modules = ROOT / "node_modules"
    if not all((modules / package / "dist" / name).exists() for package, names in ASSETS.items() for name in names):
        subprocess.run([_npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    for package, names in ASSETS.items():
        target = VENDOR / package
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(modules / package / "dist" / name, target / name)


if __name__ == "__main__":
    if not installed():
        install()
