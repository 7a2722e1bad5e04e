"""The README's "Your own city" walk-through, run as written: from an empty folder to a served layer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from layers.settings import REPO_ROOT
from tests.conftest import SHARED_DATA
from tests.server_fixtures import free_port

pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "sofia" / "districts").is_dir(), reason=f"real Sofia districts not found in {SHARED_DATA}"
)


def walk_through() -> str:
    """The section's bash blocks, in order, as one script."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Your own city\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))


def test_the_walk_through_publishes_and_serves_a_city(tmp_path):
    script, port = walk_through(), free_port()
    assert "export CITY=~/sofia" in script and "-m server" in script
    script = script.replace("export CITY=~/sofia", f"export CITY={tmp_path}/sofia").replace("5001", str(port))
    # the server runs in the background for the commands after it, polled until it answers, stopped at exit
    serve = next(line for line in script.splitlines() if "-m server" in line)
    script = script.replace(
        serve,
        f"({serve.split('#')[0].strip()} > {tmp_path}/server.log 2>&1 & echo $! > {tmp_path}/server.pid)\n"
        f"trap 'kill $(cat {tmp_path}/server.pid)' EXIT\n"
        f"for attempt in $(seq 240); do curl -sf http://127.0.0.1:{port}/ > /dev/null && break; sleep 0.5; done",
    )
    if shutil.which("ogrinfo") is None:
        script = "\n".join(line for line in script.splitlines() if not line.startswith("ogrinfo"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    published = dict(re.findall(r"^\s+(\w+)\s+published\s+(\d+)", done.stdout, re.M))
    assert published == {"closures": "5", "districts": "4", "outages": "3", "street_works": "17"}, done.stdout
    start = done.stdout.index('{"type":"FeatureCollection"')
    items, _ = json.JSONDecoder().raw_decode(done.stdout, start)  # curl's output ends without a newline
    assert items["numberMatched"] == 5 and items["features"][0]["geometry"]["type"] == "LineString"
    if shutil.which("ogrinfo"):
        assert "Feature Count: 4" in done.stdout
    assert (tmp_path / "sofia" / "dagster" / "storage").is_dir()  # the runs live in the city's own instance
    assert (tmp_path / "sofia" / "data" / "published" / "districts.gpkg").exists()
