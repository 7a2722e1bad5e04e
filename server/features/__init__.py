"""OGC API Features over the published GeoPackages: the pygeoapi provider, queries, filters, CRSs."""
