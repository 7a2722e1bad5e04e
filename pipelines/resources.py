"""The one resource assets need: where the catalog and the data live."""

from __future__ import annotations

import dagster as dg

from layers.catalog import Catalog, load_catalog
from layers.settings import PathSettings, get_paths


class GeoportalResource(dg.ConfigurableResource):
    """Paths come from GEOPORTAL_* settings; a run or a test may override any folder."""

    root: str | None = None
    catalog_dir: str | None = None
    sample_dir: str | None = None
    published_dir: str | None = None
    rejects_dir: str | None = None
    live_dir: str | None = None
    inbox_dir: str | None = None
    archive_dir: str | None = None
    quarantine_dir: str | None = None
    reports_dir: str | None = None

    @classmethod
    def of(cls, paths: PathSettings) -> GeoportalResource:
        """A resource pinned to every folder of `paths` (a test's temporary city, another deployment)."""
        return cls(**{name: str(getattr(paths, name)) for name in cls.model_fields if name != "root"})

    def paths(self) -> PathSettings:
        overrides = {k: v for k, v in self.model_dump().items() if v is not None}
        return PathSettings(**overrides) if overrides else get_paths()

    def catalog(self) -> Catalog:
        return load_catalog(self.paths().catalog_dir)
