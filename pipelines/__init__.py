"""Dagster code location of the geoportal (`dagster dev -m pipelines`)."""

from pipelines.definitions import defs

__all__ = ["defs"]
