"""WebMercatorQuad, the one tile grid served, as morecantile defines it: its bounds are never typed by hand."""

from __future__ import annotations

import morecantile

TMS = morecantile.tms.get("WebMercatorQuad")
WORLD: tuple[float, float, float, float] = tuple(TMS.bbox)  # lon/lat
MAX_LATITUDE = TMS.bbox.top  # where the grid ends; beyond it Mercator y is infinite
WORLD_HALF = TMS.xy_bbox.right  # half the Mercator world's width in metres
MAX_ZOOM = TMS.maxzoom  # the last matrix
