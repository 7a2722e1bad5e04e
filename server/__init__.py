"""The geoportal's OGC API server: pygeoapi configured from the layer catalog, behind an access-level dispatcher."""
