"""Serve the published layers: `python -m server` (settings from GEOPORTAL_* and GEOPORTAL_SERVER_* variables)."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette

from layers.catalog import Catalog, load_catalog
from layers.settings import get_paths
from server.app import create_app
from server.settings import get_server_settings


def banner(app: Starlette, catalog: Catalog, base_url: str) -> str:
    site = app.state.live.site
    public = site.views["public"].api.config["resources"]
    lines = [
        "",
        f"Geoportal OGC API        {base_url}/",
        f"  collections            {base_url}/collections",
        f"  OpenAPI                {base_url}/openapi  (HTML: {base_url}/openapi?f=html)",
        "  QGIS: Layer > Add Layer > Add WFS / OGC API - Features Layer, URL = the landing page above",
    ]
    for layer_id in (layer_id for layer_id in site.access if layer_id in catalog):
        note = "" if layer_id in public else "  (internal: send X-API-Key)"
        lines.append(f"  {layer_id:22} {base_url}/collections/{layer_id}/items{note}")
    missing = [layer_id for layer_id in catalog if layer_id not in site.access]
    if not site.access:
        lines.append(f"  no layer published yet in {get_paths().published_dir}: run `python -m pipelines`")
    elif missing:
        lines.append(f"  not published yet: {', '.join(missing)}")
    lines += [
        f"Web map                  {base_url}/map/",
        f"Vector tiles (XYZ)       {base_url}/tiles/{{z}}/{{x}}/{{y}}.pbf   TileJSON {base_url}/tiles/tilejson.json",
        f"Styles                   {base_url}/styles/geoportal.json (MapLibre), {base_url}/styles/<layer>.qml (QGIS)",
        f"Raster (OGC Coverages)   {base_url}/collections/disruption_load/coverage",
        "Dagster UI (pipeline runs):  python3 dev.py ui",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    settings = get_server_settings()
    paths = get_paths()
    catalog = load_catalog(paths.catalog_dir)
    app = create_app(catalog, paths, settings)
    print(banner(app, catalog, settings.base_url), flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", proxy_headers=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
