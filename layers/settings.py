"""Where the catalog, sources and published files live; from GEOPORTAL_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class PathSettings(BaseSettings):
    """Every path the pipeline and server share; relative ones are resolved against `root`."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_", frozen=True)

    root: Path = REPO_ROOT
    catalog_dir: Path = Path("layers")
    # Sources are looked up in `live_dir` first (files delivered through the inbox), then in the
    # bundled sample city, so a delivery replaces one file without touching the committed sample.
    sample_dir: Path = Path("data/sample/irkutsk")
    live_dir: Path = Path("data/live")
    published_dir: Path = Path("data/published")
    rejects_dir: Path = Path("data/rejects")
    inbox_dir: Path = Path("data/inbox")
    archive_dir: Path = Path("data/archive")
    quarantine_dir: Path = Path("data/quarantine")
    reports_dir: Path = Path("data/reports")  # the daily summaries, one folder per date (staff only)

    @model_validator(mode="after")
    def _absolute(self) -> PathSettings:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name != "root" and not value.is_absolute():
                object.__setattr__(self, name, (self.root / value).resolve())
        return self

    def source_path(self, relative: str) -> Path:
        live = self.live_dir / relative
        return live if live.exists() else self.sample_dir / relative

    def source_files(self, pattern: str) -> list[tuple[Path, str]]:
        """(path, path relative to its folder) of each file a glob source path matches, sorted.
        A delivered file set replaces the sample's as a whole: a live folder with any match is the
        only one read, so districts delivered as a new set never mix with the sample's old ones."""
        for folder in (self.live_dir, self.sample_dir):
            found = sorted(path for path in folder.glob(pattern) if path.is_file())
            if found:
                return [(path, path.relative_to(folder).as_posix()) for path in found]
        return []

    def published_path(self, layer_id: str) -> Path:
        return self.published_dir / f"{layer_id}.gpkg"

    def raster_path(self, product: str) -> Path:
        return self.published_dir / f"{product}.tif"

    def changes_path(self) -> Path:
        """The change log of every publication, beside the files it describes (assets/changes.py)."""
        return self.published_dir / "_changes.sqlite"

    def rejects_path(self, layer_id: str) -> Path:
        return self.rejects_dir / f"{layer_id}.csv"

    def topology_path(self, layer_id: str) -> Path:
        """A zone set's gaps and overlaps for staff (QGIS): beside the rejects, where the server never
        looks, so it can never be listed as a public layer whatever the catalog holds."""
        return self.rejects_dir / f"{layer_id}_topology.gpkg"


@lru_cache(maxsize=1)
def get_paths() -> PathSettings:
    """Built on first use, never at import, so tests can set GEOPORTAL_* before asking."""
    return PathSettings()
