"""Where layers are published: GeoPackage files (the default) or PostGIS when GEOPORTAL_STORE_URL is set."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """`GEOPORTAL_STORE_URL=postgresql://user:password@host/db`: the pipeline publishes every layer to PostGIS as
    well (its GeoPackage stays the local working copy) and the server reads PostGIS. Unset: files only."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_", frozen=True, extra="ignore")

    store_url: str | None = None


def store_url() -> str | None:
    """Read on every call, never at import: tests and the daemon set the variable before asking."""
    return StoreSettings().store_url or None


def where(url: str) -> str:
    """host:port/dbname of a store URL, for messages and logs: never the password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    except ValueError:
        return "the store"
