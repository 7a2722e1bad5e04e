"""Ingest code: source readers, pure normalisation and checks, GeoPackage publication."""
