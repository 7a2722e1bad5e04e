"""Styles from the catalog's style hints: MapLibre style JSON and QGIS QML, and their routes."""
