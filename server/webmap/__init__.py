"""The web map at /map/: its configuration and style from the catalog, the raster overlay, and its routes."""
