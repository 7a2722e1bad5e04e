"""After a publication, each worker reads ahead what the new version's first `datetime=` windows and bboxes need.

A lone window's numberMatched comes from data read once per layer version and worker: the time ranks of a
GeoPackage (server.features.time_ranks) and the check that no feature ends before it starts, the sorted times of a
PostGIS table (server.features.pg_windows). Read on demand, that read fell inside the first visitors' windows in
every worker after every publication: they were counted in SQL meanwhile (GeoPackage) or waited for it (PostGIS).
A point layer's index (server.features.point_reads) answers its bboxes once read: read ahead as well.
The server's background thread (server.app's lifespan) calls `read_ahead` every few seconds; once a version is read
a call costs a lookup per layer.
"""

from __future__ import annotations

import logging

from pygeoapi.provider.base import ProviderGenericError

from server.ogcapi.site import Site
from server.ogcapi.speedups import load_plugin

LOGGER = logging.getLogger(__name__)


def read_ahead(site: Site) -> None:
    """Start reading the current versions' window data and point indexes of every layer `site` serves, at any level."""
    seen: set[tuple] = set()
    for view in site.views.values():
        for layer_id, resource in view.query_api.config["resources"].items():
            for definition in resource.get("providers", []):  # the requests' own definitions: the same providers
                if definition.get("type") != "feature":
                    continue
                key = (definition.get("name"), definition.get("data"), definition.get("table"))
                if key in seen:
                    continue
                seen.add(key)
                provider = load_plugin("provider", definition)
                if not hasattr(provider, "read_ahead"):
                    continue
                try:
                    provider.read_ahead()
                except ProviderGenericError as error:  # the provider logged why; its requests will say it too
                    LOGGER.debug("%s: nothing read ahead: %s", layer_id, error)
