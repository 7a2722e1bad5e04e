"""Vector tiles of the published layers: rendering, indexes, cache, TileJSON/OGC metadata, routes."""
