"""Raster products derived from the layers, declared once: the pipeline writes them, the server publishes them.

Pure data, no heavy imports: the server reads these names without loading the pipeline's raster code.
"""

from __future__ import annotations

PRODUCT = "disruption_load"  # asset key, file stem (<published_dir>/disruption_load.tif) and OGC collection id
GRID_CRS = "EPSG:3857"  # the web map's own grid: the overlay lands pixel for pixel

RASTER_PRODUCTS = {
    PRODUCT: {
        "title": {"ru": "Нагрузка от работ, перекрытий и отключений", "en": "Disruption load"},
        "description": {
            "ru": "Действующие ремонты, перекрытия и отключения, взвешенные по тяжести, на сетке 50 м вокруг них"
            " (COG).",
            "en": "Active repairs, closures and outages weighted by severity on a 50 m grid around them"
            " (Cloud-Optimized GeoTIFF).",
        },
        "grid_crs": GRID_CRS,
    }
}
